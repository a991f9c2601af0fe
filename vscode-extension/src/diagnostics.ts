// The compiler's diagnostics from a hotswap build, shown in the Problems panel. Each build's
// `buildFinished` carries all of its diagnostics, so the collection is replaced as a whole.
// A diagnostic without a file (a linker error, say) is shown on the app's `hotswap.toml`.

import * as vscode from "vscode";

import type { Diagnostic, Range, Severity } from "./protocol";

export const DIAGNOSTIC_SOURCE = "hotswap";

function toRange(range: Range | undefined): vscode.Range {
  if (range === undefined) return new vscode.Range(0, 0, 0, 0);
  return new vscode.Range(range.start.line, range.start.character, range.end.line, range.end.character);
}

function toSeverity(severity: Severity): vscode.DiagnosticSeverity {
  switch (severity) {
    case "error":
      return vscode.DiagnosticSeverity.Error;
    case "warning":
      return vscode.DiagnosticSeverity.Warning;
    case "note":
      return vscode.DiagnosticSeverity.Information;
    case "help":
      return vscode.DiagnosticSeverity.Hint;
  }
}

function toCode(code: string): vscode.Diagnostic["code"] {
  // rustc's error codes have a page each in the error index.
  if (/^E\d{4}$/.test(code)) {
    return { value: code, target: vscode.Uri.parse(`https://doc.rust-lang.org/error_codes/${code}.html`) };
  }
  return code;
}

export function toVscodeDiagnostic(diagnostic: Diagnostic): vscode.Diagnostic {
  const converted = new vscode.Diagnostic(toRange(diagnostic.range), diagnostic.message, toSeverity(diagnostic.severity));
  converted.source = DIAGNOSTIC_SOURCE;
  if (diagnostic.code !== undefined) converted.code = toCode(diagnostic.code);
  if (diagnostic.related.length > 0) {
    converted.relatedInformation = diagnostic.related.map(
      (related) =>
        new vscode.DiagnosticRelatedInformation(
          new vscode.Location(vscode.Uri.file(related.file), toRange(related.range)),
          related.message,
        ),
    );
  }
  return converted;
}

/** Groups a build's diagnostics by file; those without a file go to `fallbackFile`. */
export function diagnosticsByFile(
  diagnostics: readonly Diagnostic[],
  fallbackFile: string,
): Map<string, vscode.Diagnostic[]> {
  const byFile = new Map<string, vscode.Diagnostic[]>();
  for (const diagnostic of diagnostics) {
    const file = diagnostic.file ?? fallbackFile;
    let list = byFile.get(file);
    if (list === undefined) {
      list = [];
      byFile.set(file, list);
    }
    list.push(toVscodeDiagnostic(diagnostic));
  }
  return byFile;
}
