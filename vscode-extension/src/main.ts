// Entry point: `activate` builds the Ctx and registers the commands; `deactivate` is the Ctx's
// disposal, which VS Code runs through `context.subscriptions`.

import * as vscode from "vscode";

import { COMMANDS } from "./commands";
import { Ctx } from "./ctx";

/** What `activate` returns, for other extensions and the tests. */
export interface HotswapApi {
  readonly ctx: Ctx;
}

export async function activate(context: vscode.ExtensionContext): Promise<HotswapApi> {
  const ctx = new Ctx(context);
  context.subscriptions.push(ctx);
  for (const [id, factory] of Object.entries(COMMANDS)) {
    context.subscriptions.push(vscode.commands.registerCommand(id, factory(ctx)));
  }
  try {
    await ctx.start();
  } catch (error) {
    const message = `hotswap failed to start: ${(error as Error).message}`;
    ctx.log.error(message);
    void vscode.window.showErrorMessage(message);
  }
  return { ctx };
}

export function deactivate(): void {
  // Everything is disposed through context.subscriptions.
}
