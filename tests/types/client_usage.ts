// Compiled with tsc --strict --noEmit by tests/test_browser_types.py: the .d.ts
// served beside /wsevents.js must describe the client as the docs use it.
import {
  connect, Client, WSEventsError, type Message, type PresenceDiff, type Subscribed,
} from "../../wsevents/static/wsevents.js";

interface Said {
  user: string;
  text: string;
}

async function main(): Promise<void> {
  const client: Client = await connect("/ws/chat/lobby?user=ann", {
    codec: "msgpack",
    timeout: 5000,
    backoff: [100, 5000],
    maxAttempts: 10,
    onConnect: async (c) => { c.send("hello"); },
    onDisconnect: (code, reason) => console.log(code, reason),
  });
  const stop: () => void = client.on<Said>("said", (data, message: Message<Said>) => {
    console.log(data.user.toUpperCase(), message.id);
  });
  const members = new Map<string, { user: string }>();
  client.on<PresenceDiff<{ user: string }>>("wsevents.presence", (diff) => {
    for (const id of Object.keys(diff.left)) members.delete(id);
    for (const [id, info] of Object.entries(diff.joined)) members.set(id, info);
    console.log(diff.topic, [...members.values()].map((info) => info.user.toUpperCase()));
  });
  client.on<Subscribed>("wsevents.subscribed", (data) => {
    if (data.recovered === false) console.log(data.topic, data.epoch, data.offset + 1);
  });
  client.send("say", { text: "hi" });
  try {
    const pong = await client.request<{ n: number }>("ping", { n: 1 }, { timeout: 1000 });
    console.log(pong.n + 1);
  } catch (error) {
    if (error instanceof WSEventsError) console.log(error.code, error.details);
  }
  stop();
  console.log(client.connected, client.reconnects);
  client.close(1000, "bye");
}

void main();
