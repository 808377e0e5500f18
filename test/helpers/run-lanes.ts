// For tests only (it spies with vitest): the bench scripts share decode-steps.ts, not this.
import { vi } from 'vitest';
import { engineAddon } from '../../server/src/engine/native-addon.js';

/**
 * Records the sequence ids of every run of steps (the native addon's `run`) started from now on, in
 * the order the loop hands them over; the runs still run. `restore()` stops recording.
 */
export function recordRunLanes(): { lanes: number[][]; restore: () => void } {
  const addon = engineAddon()!;
  const realRun = addon.run;
  const lanes: number[][] = [];
  const spy = vi.spyOn(addon, 'run').mockImplementation((...args) => (lanes.push([...args[2]]), realRun(...args)));
  return { lanes, restore: () => spy.mockRestore() };
}
