import { DataType } from '../dtype.js';
import { attr, makeNode } from '../graph.js';
import type { AttributeProto, NodeProto, TensorProto } from '../onnx-schema.js';

/** Small helper for writing ONNX graphs by hand: unique value names, constants, node list. */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly constants = new Map<string, string>();

  /** Adds a node named `name` (a PyTorch-export-style path) and returns its first output. */
  op(opType: string, inputs: string[], name: string, attributes: AttributeProto[] = [], outputs = 1): string {
    const outs = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(makeNode(opType, inputs, outs, name, attributes));
    return outs[0]!;
  }

  opMulti(opType: string, inputs: string[], name: string, outputs: number, attributes: AttributeProto[] = []): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(makeNode(opType, inputs, outs, name, attributes));
    return outs;
  }

  int64s(values: number[], scalar = false): string {
    const key = `i64:${scalar}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_i64_${this.constants.size}`;
      this.initializers.push({ name, data_type: DataType.INT64, dims: scalar ? [] : [values.length], raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  floats(values: ArrayLike<number>, dims: number[]): string {
    const key = `f32:${dims.join('x')}:${Array.from(values).join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_f32_${this.constants.size}`;
      this.initializers.push({ name, data_type: DataType.FLOAT, dims, raw_data: new Uint8Array(Float32Array.from(values).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  scalar(value: number): string {
    return this.floats([value], []);
  }
}

export { attr };
