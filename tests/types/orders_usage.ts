// Answering a server request with the generated types: tsc --strict accepts it.
import { connect, WSEventsError } from "./wsevents.js";
import { ordersPath, type OrdersApi, type Confirmed } from "./orders_api.js";

async function main(): Promise<void> {
  const orders = await connect<OrdersApi>(ordersPath({}));
  const stop = orders.answer("confirm", async (data) => {
    const yes: boolean = data.question.startsWith("Buy");
    return { yes } satisfies Confirmed;
  });
  orders.answer("confirm", () => {
    throw Object.assign(new Error("no"), { code: "declined" });
  });
  const placed = await orders.request("place", { item: "teapot", quantity: 2 });
  const order: number = placed.order;
  stop();
  void order;
  void WSEventsError;
}

void main;
