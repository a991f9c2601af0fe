// Which saves are sent: include/exclude globs relative to the workspace folder, and which app a
// file belongs to.

import * as assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";

import { DEFAULT_INCLUDE_FOR_TESTS } from "../support/defaults";
import { SaveFilter, appRootFor, isInside } from "../../src/saveFilter";

test("the default globs take Rust sources and manifests, not build output", () => {
  const filter = new SaveFilter(DEFAULT_INCLUDE_FOR_TESTS.include, DEFAULT_INCLUDE_FOR_TESTS.exclude);
  assert.ok(filter.matches("src/lib.rs"));
  assert.ok(filter.matches("lib.rs"));
  assert.ok(filter.matches("crates/app/src/routes/todo.rs"));
  assert.ok(filter.matches("Cargo.toml"));
  assert.ok(filter.matches("crates/app/Cargo.toml"));
  assert.ok(filter.matches(".hidden/src/x.rs"), "dot folders match too");
  assert.ok(!filter.matches("README.md"));
  assert.ok(!filter.matches("target/debug/build/out.rs"));
  assert.ok(!filter.matches("crates/app/target/x.rs"));
});

test("custom globs and Windows separators", () => {
  const filter = new SaveFilter(["templates/**/*.html", "**/*.rs"], []);
  assert.ok(filter.matches("templates/index.html"));
  assert.ok(filter.matches(["templates", "pages", "a.html"].join(path.sep)));
  assert.ok(filter.matches("src\\lib.rs"), "backslashes are separators");
  assert.ok(!filter.matches("static/index.html"));
  assert.ok(!new SaveFilter([], []).matches("src/lib.rs"), "no include globs: nothing is sent");
});

test("a file belongs to the deepest app folder that contains it", () => {
  const roots = ["/w", "/w/apps/todo", "/w/apps/todo-admin"];
  assert.equal(appRootFor(roots, "/w/apps/todo/src/lib.rs"), "/w/apps/todo");
  assert.equal(appRootFor(roots, "/w/apps/todo-admin/src/lib.rs"), "/w/apps/todo-admin");
  assert.equal(appRootFor(roots, "/w/shared/lib.rs"), "/w");
  assert.equal(appRootFor(roots, "/elsewhere/lib.rs"), undefined);
  assert.ok(isInside("/w", "/w"));
  assert.ok(!isInside("/w/a", "/w/ab/c"));
});
