import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { TypeScriptGenerator } = require('@asyncapi/modelina');
const document = JSON.parse(await readFile(process.argv[2], 'utf8'));
const gen = new TypeScriptGenerator({ modelType: 'interface', rawPropertyNames: true, enumType: 'union' });
const models = await gen.generate(document);
for (const m of models) console.log(`// ${m.modelName}\nexport ${m.result}\n`);
