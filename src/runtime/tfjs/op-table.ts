import type { NodeProto } from '../../model/onnx-schema.js';
import type { OpEntry, OpImpl } from './ops/types.js';

/** `domain:op_type`, with the default domain spelled '' whether a node writes it '' or 'ai.onnx'. */
export function opKey(opType: string, domain = ''): string {
  return `${domain === 'ai.onnx' ? '' : domain}:${opType}`;
}

export function nodeOpKey(node: NodeProto): string {
  return opKey(node.op_type ?? '', node.domain ?? '');
}

/** The executor's ops by key. An op listed twice is refused: with a spread of tables the later one would silently win. */
export function opTable(entries: readonly OpEntry[]): ReadonlyMap<string, OpImpl> {
  const table = new Map<string, OpImpl>();
  for (const [opType, impl, domain] of entries) {
    const key = opKey(opType, domain);
    if (table.has(key)) throw new Error(`tfjs executor: op ${domain ? `${domain}.` : ''}${opType} is listed twice; remove one entry`);
    table.set(key, impl);
  }
  return table;
}
