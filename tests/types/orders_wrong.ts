// Each marked line must fail tsc --strict against the orders' generated types.
import { connect } from "./wsevents.js";
import { ordersPath, type OrdersApi } from "./orders_api.js";

async function main(): Promise<void> {
  const orders = await connect<OrdersApi>(ordersPath({}));
  orders.answer("confirm", () => ({ yes: "yes" })); // WRONG: yes is a boolean
  orders.answer("confirm", async () => ({ no: true })); // WRONG: the answer is a Confirmed
  orders.answer("confirm", (data) => ({ yes: data.nobody })); // WRONG: Question has no nobody
  orders.answer("place", () => ({ yes: true })); // WRONG: place is not a server request
  orders.on("confirm", () => undefined); // WRONG: confirm is a request, not a push
}

void main;
