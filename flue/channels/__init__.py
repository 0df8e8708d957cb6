"""The toolkit for channels and channel kinds (what ``flue-channels`` itself is built on).

- :mod:`flue.channels.keys`: conversation keys (``slack:v1:...``, ``github:v1:...``);
- :mod:`flue.channels.rules`: declarative dispatch rules of channel files;
- :mod:`flue.channels.replies`: answering back once a dispatch settles, with retries;
- :mod:`flue.channels.http`: exact bodies with limits, HMAC checks, secrets, results;
- :mod:`flue.channels.build`: building and checking a project's channels at load.

The authoring types (``Channel``, ``ChannelRoute``, ``ChannelKind``) are in
:mod:`flue.authoring.channels`; the hook is ``flue_channel_kinds`` in
:mod:`flue.hookspecs`.
"""
