/**
 * The registry of subcommands: one module per command, each exporting a
 * `register(program)` function. Add a line here to add a command.
 */
import type { Command } from "commander";
import { register as agent } from "./agent.js";
import { register as caps } from "./caps.js";
import { register as demo } from "./demo.js";
import { register as nb } from "./nb.js";
import { register as publisher } from "./publisher.js";
import { register as tc } from "./tc.js";

export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [agent, caps, demo, nb, publisher, tc];
