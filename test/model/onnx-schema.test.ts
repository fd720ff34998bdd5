import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import protobuf from 'protobufjs';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ONNX_ROOT } from '../../src/model/onnx-schema.js';

/**
 * The hand-written interfaces of src/model/onnx-schema.ts against its proto text: every interface
 * names a message, has exactly its fields, each optional, an array exactly when the field is
 * repeated, and of the type the field decodes to. A message-typed field may be `unknown` (a message
 * pare does not model) or an inline object type, which is checked the same way.
 */

const SCHEMA = resolve(__dirname, '../../src/model/onnx-schema.ts');

/** interfaces whose name is not their message's */
const MESSAGE_OF: Record<string, string> = {
  StringStringEntry: 'onnx.StringStringEntryProto',
  OperatorSetId: 'onnx.OperatorSetIdProto',
  TensorShapeDim: 'onnx.TensorShapeProto.Dimension',
};
/** interfaces that describe no message */
const NOT_MESSAGES = new Set(['LongBits']);

/** what each scalar field decodes to (int64 as a number or Long, see normaliseLongs) */
const SCALAR: Record<string, string> = {
  string: 'string',
  bytes: 'Uint8Array',
  bool: 'boolean',
  float: 'number',
  double: 'number',
  int32: 'number',
  uint32: 'number',
  int64: 'Int64',
  uint64: 'Int64',
};

const messageOf = (iface: string): string => MESSAGE_OF[iface] ?? `onnx.${iface}`;
const fullName = (t: protobuf.ReflectionObject): string => t.fullName.replace(/^\./, '');

/** Every difference between the interfaces in `source` and the proto messages, one line each. */
function schemaDrift(source: string): string[] {
  ONNX_ROOT.resolveAll();
  const sf = ts.createSourceFile('onnx-schema.ts', source, ts.ScriptTarget.ES2022, true);
  const problems: string[] = [];

  const typeDrift = (where: string, t: ts.TypeNode, f: protobuf.Field): string[] => {
    const found = t.getText(sf);
    const resolved = f.resolvedType;
    if (resolved instanceof protobuf.Enum) return found === 'number' ? [] : [`${where}: enum ${resolved.name} decodes to number, found ${found}`];
    if (resolved instanceof protobuf.Type) {
      if (t.kind === ts.SyntaxKind.UnknownKeyword) return [];
      if (ts.isTypeLiteralNode(t)) return membersDrift(where, t.members, resolved);
      if (ts.isTypeReferenceNode(t) && messageOf(t.typeName.getText(sf)) === fullName(resolved)) return [];
      return [`${where}: message ${fullName(resolved)} in the proto, ${found} here`];
    }
    const want = SCALAR[f.type];
    return found === want ? [] : [`${where}: ${f.type} decodes to ${want}, found ${found}`];
  };

  const membersDrift = (where: string, members: ts.NodeArray<ts.TypeElement>, message: protobuf.Type): string[] => {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const m of members) {
      if (!ts.isPropertySignature(m) || !m.type) {
        out.push(`${where}: '${m.getText(sf)}' is not a field`);
        continue;
      }
      const name = m.name.getText(sf);
      seen.add(name);
      const f = message.fields[name];
      if (!f) {
        out.push(`${where}.${name}: ${fullName(message)} has no such field`);
        continue;
      }
      if (!m.questionToken) out.push(`${where}.${name}: must be optional, as every proto2 field is`);
      const isArray = ts.isArrayTypeNode(m.type);
      if (isArray !== f.repeated) out.push(`${where}.${name}: ${f.repeated ? 'repeated' : 'singular'} in the proto, ${isArray ? 'an array' : 'not an array'} here`);
      out.push(...typeDrift(`${where}.${name}`, ts.isArrayTypeNode(m.type) ? m.type.elementType : m.type, f));
    }
    for (const f of message.fieldsArray) if (!seen.has(f.name)) out.push(`${where}: field ${f.name} of ${fullName(message)} is missing`);
    return out;
  };

  let checked = 0;
  for (const s of sf.statements) {
    if (!ts.isInterfaceDeclaration(s) || NOT_MESSAGES.has(s.name.text)) continue;
    const name = s.name.text;
    const message = ONNX_ROOT.lookup(messageOf(name));
    if (!(message instanceof protobuf.Type)) {
      problems.push(`${name}: no message ${messageOf(name)} in the proto text`);
      continue;
    }
    checked++;
    problems.push(...membersDrift(name, s.members, message));
  }
  if (checked === 0) problems.push('no interface was checked');
  return problems;
}

describe('onnx-schema.ts interfaces against its proto text', () => {
  const source = readFileSync(SCHEMA, 'utf8');

  it('every interface matches its message: fields, types, repeatedness', () => {
    expect(schemaDrift(source)).toEqual([]);
  });

  it('the check reports a field dropped, renamed, retyped or made singular', () => {
    const edit = (from: string, to: string) => {
      expect(source).toContain(from);
      return (s: string) => s.replace(from, to);
    };
    const drifted = [
      edit('  raw_data?: Uint8Array;\n', '  raw_data?: Uint8Array[];\n'),
      edit('  data_location?: number;\n', ''),
      edit('  op_type?: string;\n', '  opType?: string;\n'),
      edit('  dim_value?: Int64;\n', '  dim_value?: number;\n'),
      edit('  opset_import?: OperatorSetId[];\n', '  opset_import?: OperatorSetId;\n'),
      edit('  value_info?: ValueInfoProto[];\n', '  value_info?: TensorProto[];\n'),
    ].reduce((s, f) => f(s), source);
    expect(schemaDrift(drifted)).toEqual([
      'TensorProto.raw_data: singular in the proto, an array here',
      'TensorProto: field data_location of onnx.TensorProto is missing',
      'TensorShapeDim.dim_value: int64 decodes to Int64, found number',
      'NodeProto.opType: onnx.NodeProto has no such field',
      'NodeProto: field op_type of onnx.NodeProto is missing',
      'GraphProto.value_info: message onnx.ValueInfoProto in the proto, TensorProto here',
      'ModelProto.opset_import: repeated in the proto, not an array here',
    ]);
  });
});
