#!/usr/bin/env node
// Parse AsyncAPI documents with the official @asyncapi/parser and its default
// rulesets; print every diagnostic; exit 1 on any error or warning.
// Usage: node validate.mjs FILE...   (the last line: "errors=N warnings=M")
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

const parser = new Parser();
let errors = 0;
let warnings = 0;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, 'utf8'), { source: file });
  if (document === undefined && !diagnostics.some((d) => d.severity === DiagnosticSeverity.Error)) {
    console.log(`${file}: error parse-failed: the parser returned no document`);
    errors++;
  }
  for (const d of diagnostics) {
    if (d.severity === DiagnosticSeverity.Error) errors++;
    else if (d.severity === DiagnosticSeverity.Warning) warnings++;
    else continue;
    const where = '/' + (d.path || []).join('/');
    const kind = d.severity === DiagnosticSeverity.Error ? 'error' : 'warning';
    console.log(`${file}: ${kind} ${d.code} ${where} ${String(d.message).replace(/\s+/g, ' ')}`);
  }
}
console.log(`errors=${errors} warnings=${warnings}`);
process.exit(errors || warnings ? 1 : 0);
