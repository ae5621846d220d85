// Compiled with tsc --strict by tests/test_codegen.py beside the chat example's
// generated types (`wsevents client examples.chat.app:app --lang typescript`),
// then run by Node against a live server: every event, reply, push and error.
import { connect, Client, WSEventsError } from "./wsevents.js";
import {
  chatRoomErrors, chatRoomPath, type ChatRoomApi, type ChatRoomErrorCode, type Pong, type Said,
} from "./chat_api.js";

declare const process: { argv: string[] };

async function main(base: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const chat = await connect<ChatRoomApi>(base + chatRoomPath({ room: "ts lobby" }, { user: "ts" }), {
    reconnect: false,
  });
  const heard = new Promise<Said>((resolve) => chat.on("said", (said) => resolve(said)));
  const members = new Promise<string[]>((resolve) =>
    chat.on("wsevents.presence", (diff) => resolve(Object.values(diff.joined).map((info) => String(info.user)))),
  );
  const position = new Promise<string>((resolve) => chat.on("wsevents.subscribed", (data) => resolve(data.topic)));
  const pong: Pong = await chat.request("ping", { n: 41 });
  out.pong = pong.n + 1;
  const answer: null = await chat.request("say", { text: "hello from ts" });
  out.answer = answer;
  out.said = await heard;
  out.members = await members;
  out.topic = await position;
  // What the types forbid still gets a clear answer from the server.
  try {
    await chat.request("ping", { n: "one" } as unknown as { n: number });
  } catch (error) {
    if (error instanceof WSEventsError) {
      const code = error.code as ChatRoomErrorCode;
      out.invalid = [code, chatRoomErrors[code]];
    }
  }
  try {
    await (chat as unknown as Client).request("nope");
  } catch (error) {
    if (error instanceof WSEventsError) out.unknown = error.code;
  }
  const pushed = new Promise<string>((resolve) => chat.on("error", (data) => resolve(data.code)));
  chat.send("ping", { n: "two" } as unknown as { n: number });
  out.pushedError = await pushed;
  chat.close();
  return out;
}

main(process.argv[2]).then((out) => console.log(JSON.stringify(out)));
