import { defineConfig } from "vitest/config";

// Integration tests start real ovsdb-server/ovs-vswitchd/etcd processes, each
// test file in its own network namespace, so files may run in parallel but the
// machine has two cores: keep the worker count small and the timeouts generous.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/harness/leak-guard.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
