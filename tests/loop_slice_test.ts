/**
 * A busy loop looks for input at the start of its slices of work
 * (`mod/chat/loop_slice.ts`): the pollers registered there run when a
 * slice starts, and the epoll set answers a zero-timeout look on the loop's
 * own thread (`libc.epollWaitNow`). How much sooner a PING is answered
 * under a storm is the chat-scale benchmark's to say.
 * @module
 */
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import * as libc from "../mod/sys/libc.ts";
import { EpollLoop } from "../mod/chat/epoll_loop.ts";
import {
  commandSlice,
  inSlice,
  lastLook,
  onBusySlice,
  SLICE_MS,
  sliceStarts,
} from "../mod/chat/loop_slice.ts";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

Deno.test("loop slice: a slice starting runs the registered pollers, at most once a millisecond, until removed", async () => {
  let polls = 0;
  const remove = onBusySlice(() => polls++);
  try {
    await nextTurn();
    while (performance.now() - lastLook() < 1) await nextTurn(); // past any look an earlier test made
    commandSlice(); // the first command of a turn starts a slice
    assert.equal(polls, 1);
    const at = performance.now() + 1;
    sliceStarts(at);
    assert.equal(polls, 2);
    sliceStarts(at + 0.5); // the hub's or a flush's slice in the same millisecond: no second look
    assert.equal(polls, 2);
    sliceStarts(at + 1.5);
    assert.equal(polls, 3);
  } finally {
    remove();
  }
  sliceStarts(performance.now() + 10);
  assert.equal(polls, 3, "a removed poller is not run");
});

Deno.test("loop slice: inSlice runs its work right after a look with room, never inside a look that found the slice spent", async () => {
  await nextTurn();
  const order: string[] = [];
  const at = performance.now();
  while (performance.now() - at < SLICE_MS + 1) commandSlice(); // this turn's slice is spent
  const done = inSlice(() => order.push("work"));
  order.push("after the call");
  await done;
  assert.deepEqual(order, ["after the call", "work"], "a spent slice: the work waits for a later turn");
  assert.equal(await inSlice(() => "at once"), "at once");
});

Deno.test("libc epollWaitNow: a zero-timeout look on this thread returns what is ready, and nothing when nothing is", () => {
  const ep = libc.epollCreate();
  const fd = libc.eventFd();
  try {
    libc.epollCtl(ep, "add", fd, libc.EPOLL.IN);
    assert.deepEqual(libc.epollWaitNow(ep, 8), []);
    libc.write(fd, new Uint8Array(new BigUint64Array([1n]).buffer));
    assert.deepEqual(libc.epollWaitNow(ep, 8), [{ fd, events: libc.EPOLL.IN }]);
  } finally {
    libc.close(fd);
    libc.close(ep);
  }
});

Deno.test("epoll loop: input is told to its owner once, whether the parked wait or a busy slice's look sees it first", async () => {
  let polls = 0;
  const counter = onBusySlice(() => polls++); // runs beside the loop's own poller
  const loop = new EpollLoop();
  const fd = libc.eventFd();
  const seen: number[] = [];
  loop.add(fd, { ready: (events) => seen.push(events) });
  try {
    libc.write(fd, new Uint8Array(new BigUint64Array([1n]).buffer));
    // Told once, whichever look sees the edge first: the parked wait's or a slice's.
    for (let i = 0; i < 200 && !seen.some((e) => e & libc.EPOLL.IN); i++) {
      await nextTurn();
      const at = performance.now();
      while (performance.now() - at < 1.1) { /* a busy turn */ }
      sliceStarts();
    }
    assert.equal(seen.filter((e) => e & libc.EPOLL.IN).length, 1, "the input was told to its owner, once");
    assert.ok(polls > 0);
  } finally {
    loop.remove(fd);
    libc.close(fd);
    await loop.close();
    counter();
  }
});
