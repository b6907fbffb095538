/** Benchmark suites by name; each writes bench/results/<name>.json. */
export const suites: Record<string, () => Promise<void>> = {};
