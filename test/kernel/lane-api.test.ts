/** The lane's host side without a full boot: marker parsing and the timeout. */
import { describe, expect, it } from "vitest";
import { bootLane, parseMarker } from "./lane.js";

describe("kernel lane API", () => {
  it("parses marker lines", () => {
    expect(parseMarker('@@RESULT ping {"rc": 0}')).toMatchObject({
      tag: "RESULT",
      key: "ping",
      value: { rc: 0 },
    });
    expect(parseMarker("@@LANE-EXIT 3")).toMatchObject({ tag: "LANE-EXIT", key: "3" });
    expect(parseMarker("+ echo @@RESULT x")).toBeUndefined();
  });

  it("kills qemu and fails clearly when the guest outlives the timeout", async () => {
    await expect(bootLane({ script: "sleep 600", timeoutMs: 3000 })).rejects.toThrow(
      /did not finish within 3000 ms/,
    );
  });
});
