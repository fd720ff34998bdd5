import { UserError } from '../errors.js';
import type { Model } from './model.js';
import { int64ToNumber } from './onnx-schema.js';

/** What a model takes and gives: its one input and its first output, and what kind of task that makes it. */
export interface ModelIo {
  task: 'causal-lm' | 'classification';
  inputName: string;
  inputDims: number[];
  outputName: string;
  /** static last dim of the output (the vocabulary for causal LMs), when the model declares it */
  outputWidth?: number;
}

export function modelIo(model: Model): ModelIo {
  const inits = new Set((model.graph.initializer ?? []).map((t) => t.name));
  const inputs = (model.graph.input ?? []).filter((v) => !inits.has(v.name));
  if (inputs.length !== 1) {
    throw new UserError(`${model.path}: evaluation needs a model with one input, found ${inputs.length} (${inputs.map((v) => v.name).join(', ')})`);
  }
  const input = inputs[0];
  const output = model.graph.output?.[0];
  const tt = input.type?.tensor_type;
  if (!tt || !output) throw new UserError(`${model.path}: input '${input.name}' is not a tensor or the model has no output`);
  const inputDims = (tt.shape?.dim ?? []).map((d) => (d.dim_value !== undefined ? int64ToNumber(d.dim_value) : -1));
  const task = tt.elem_type === 7 || tt.elem_type === 6 ? 'causal-lm' : 'classification';
  const last = output.type?.tensor_type?.shape?.dim?.at(-1)?.dim_value;
  return { task, inputName: input.name ?? '', inputDims, outputName: output.name ?? '', outputWidth: last !== undefined ? int64ToNumber(last) : undefined };
}
