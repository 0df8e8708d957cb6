"""Greet someone by name."""

http = True


async def run(ctx):
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}  # any JSON value may arrive
    name = payload.get("name", "world")
    harness = await ctx.init("assistant")
    session = await harness.session()
    reply = await session.skill("greet", args={"name": name})
    ctx.log.info("greeted", name=name)
    return {"greeting": reply.text}
