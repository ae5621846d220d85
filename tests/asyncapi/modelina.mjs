#!/usr/bin/env node
// Generate TypeScript from an AsyncAPI document with Modelina, as docs/asyncapi.md
// recommends: interfaces, the wire's property names, enums as unions, maps as records.
// Usage: node modelina.mjs DOCUMENT.json OUTPUT.ts
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { TypeScriptGenerator } = require('@asyncapi/modelina');

const [input, output] = process.argv.slice(2);
const document = JSON.parse(await readFile(input, 'utf8'));
const generator = new TypeScriptGenerator({
  modelType: 'interface', rawPropertyNames: true, enumType: 'union', mapType: 'record',
});
const models = await generator.generate(document);
await writeFile(output, models.map((model) => `export ${model.result}\n`).join('\n'));
console.log(models.map((model) => model.modelName).join('\n'));
