import { describe, expect, it } from 'vitest';
import { EXECUTOR_OPS } from '../../../src/runtime/tfjs/executor.js';
import { nodeOpKey, opTable } from '../../../src/runtime/tfjs/op-table.js';
import type { OpImpl } from '../../../src/runtime/tfjs/ops/types.js';

const identity: OpImpl = (a) => a.val(0);

describe('the tfjs executor op list', () => {
  it('lists every op once: the table has one entry per list entry', () => {
    expect(opTable(EXECUTOR_OPS).size).toBe(EXECUTOR_OPS.length);
  });

  it('an op listed twice is refused with its name, however the default domain is spelled', () => {
    expect(() => opTable([...EXECUTOR_OPS, ['Add', identity]])).toThrow('tfjs executor: op Add is listed twice; remove one entry');
    expect(() => opTable([...EXECUTOR_OPS, ['Add', identity, 'ai.onnx']])).toThrow(/op ai\.onnx\.Add is listed twice/);
    expect(() => opTable([...EXECUTOR_OPS, ['MatMulNBits', identity, 'com.microsoft']])).toThrow(/op com\.microsoft\.MatMulNBits is listed twice/);
  });

  it('the same type in another domain is another op', () => {
    const table = opTable([...EXECUTOR_OPS, ['Add', identity, 'com.example']]);
    expect(table.get(nodeOpKey({ op_type: 'Add', domain: 'com.example' }))).toBe(identity);
    expect(table.get(nodeOpKey({ op_type: 'Add', domain: 'ai.onnx' }))).toBe(table.get(nodeOpKey({ op_type: 'Add' })));
    expect(table.has(nodeOpKey({ op_type: 'MatMulNBits' }))).toBe(false);
  });
});
