// Compiled with tsc --strict --noEmit by tests/test_browser_types.py: the .d.ts
// served beside /wsevents.js must describe the client as the docs use it.
import { connect, Client, WSEventsError, type Message } from "../../wsevents/static/wsevents.js";

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
