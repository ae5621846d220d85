import os, time
import msgpack
from bench.servers import wsevents_app, raw_msgpack, _lifespan  # noqa
SPIN = float(os.environ.get("SPIN_US", "0")) / 1e6
async def raw_slow(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await receive()
    await send({"type": "websocket.accept", "subprotocol": "wsevents.msgpack"})
    unpackb, packb = msgpack.unpackb, msgpack.packb
    pc = time.perf_counter
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return None
        end = pc() + SPIN
        while pc() < end:
            pass
        frame = unpackb(message["bytes"])
        reply = {"event": frame["event"], "data": frame["data"], "id": frame["id"]}
        await send({"type": "websocket.send", "bytes": packb(reply)})
