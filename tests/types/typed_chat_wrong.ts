// Each marked line must fail tsc --strict against the chat's generated types.
import { connect } from "./wsevents.js";
import { chatRoomPath, type ChatRoomApi } from "./chat_api.js";

async function main(): Promise<void> {
  const chat = await connect<ChatRoomApi>(chatRoomPath({ room: "lobby" }));
  await chat.request("ping", { n: "one" }); // WRONG: n is a number
  await chat.request("ping"); // WRONG: ping takes data
  await chat.request("pong", { n: 1 }); // WRONG: no such client event
  const text: string = await chat.request("ping", { n: 1 }); // WRONG: the reply is a Pong
  chat.on("say", () => undefined); // WRONG: say is not a push
  chat.on("said", (said) => said.nobody); // WRONG: Said has no nobody
  chatRoomPath({ rooom: "lobby" }); // WRONG: the parameter is room
  chat.send("say", { text: 1 }); // WRONG: text is a string
}

void main;
