"""Model providers: the contract (``base``), ``provider/model`` resolution
(``registry``) and the litellm-backed default (``litellm_provider``, imported
only on the first model call)."""
