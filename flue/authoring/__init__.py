"""Authoring formats: the files people write, parsed into pydantic models.

- ``agents/<name>.md`` / ``.yaml`` / ``.py`` -> :class:`flue.authoring.agents.AgentDefinition`
- ``skills/<name>/SKILL.md``        -> :class:`flue.authoring.skills.SkillDefinition`
- ``workflows/<name>.py`` / ``.yaml`` -> :class:`flue.authoring.workflows.WorkflowDefinition`
- ``channels/<name>.yaml`` / ``.py`` -> :class:`flue.authoring.channels.ChannelDefinition`

Each parser returns ``(model | None, diagnostics)`` and never raises on bad input.
"""
