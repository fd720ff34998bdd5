import { UserError } from '../errors.js';
import { AbsMaxAccumulator, SumAccumulator, SumSquaresAccumulator } from '../linalg/channel-stats.js';
import { GramAccumulator, type GramPrecision } from '../linalg/gram.js';
import type { LinearLayer } from '../model/linears.js';

export interface StatsNeeds {
  /** Σ xxᵀ over rows, for SparseGPT/GPTQ Hessians */
  hessian?: boolean;
  /** max |x| per input channel, for SmoothQuant */
  absmax?: boolean;
  /** Σ x² per input channel, for Wanda's ‖X_j‖₂ */
  sqnorm?: boolean;
  /** Σ x per input channel, for bias correction's mean input */
  sum?: boolean;
}

/** What calibration learned about one activation tensor. `rows` counts tokens (or spatial positions). */
export interface InputStats {
  tensor: string;
  dim: number;
  rows: number;
  /** Σ xxᵀ, dim × dim row-major float64; the Hessian of ‖WX − ŴX‖² is 2/rows · xtx */
  xtx?: Float64Array;
  absmax?: Float32Array;
  sqnorm?: Float64Array;
  /** Σ x per channel; the mean input is sum / rows */
  sum?: Float64Array;
}

/** Streams activations of one tensor into InputStats. MatMul/Gemm inputs are [..., dim]; Conv inputs [N, C, ...]. */
export class InputStatsAccumulator {
  private readonly dim: number;
  private rows = 0;
  private readonly gram?: GramAccumulator;
  private readonly absmax?: AbsMaxAccumulator;
  private readonly sqnorm?: SumSquaresAccumulator;
  private readonly sum?: SumAccumulator;

  /** `hessianPrecision`: each block of rows' XᵀX product in float32 (default) or float64 (src/linalg/gram.ts) */
  constructor(
    private readonly layer: LinearLayer,
    needs: StatsNeeds,
    hessianPrecision?: GramPrecision,
  ) {
    this.dim = layer.kind === 'conv' ? Number(layer.weightShape[1]) * (layer.group ?? 1) : layer.inFeatures;
    if (needs.hessian) {
      if (layer.kind === 'conv') throw new UserError(`calibration: Hessians of conv layers are not supported ('${layer.name}'); leave it out of targets`);
      this.gram = new GramAccumulator(this.dim, { precision: hessianPrecision });
    }
    if (needs.absmax) this.absmax = new AbsMaxAccumulator(this.dim);
    if (needs.sqnorm) this.sqnorm = new SumSquaresAccumulator(this.dim);
    if (needs.sum) this.sum = new SumAccumulator(this.dim);
  }

  async add(data: Float32Array, dims: number[]): Promise<void> {
    const d = this.dim;
    if (this.layer.kind !== 'conv') {
      if (dims.at(-1) !== d) throw new Error(`calibration: '${this.layer.input}' has shape [${dims}], expected last axis ${d}`);
      const rows = data.length / d;
      if (this.gram) await this.gram.add(data, rows);
      this.absmax?.add(data, rows);
      this.sqnorm?.add(data, rows);
      this.sum?.add(data, rows);
      this.rows += rows;
      return;
    }
    // conv input [N, C, spatial...]: channel statistics over N and every position
    const [n, c] = dims as [number, number];
    if (c !== d) throw new Error(`calibration: '${this.layer.input}' has shape [${dims}], expected ${d} channels`);
    const spatial = data.length / (n * c);
    this.absmax?.addChannelsFirst(data, n, spatial);
    this.sqnorm?.addChannelsFirst(data, n, spatial);
    this.sum?.addChannelsFirst(data, n, spatial);
    this.rows += n * spatial;
  }

  async result(): Promise<InputStats> {
    return {
      tensor: this.layer.input,
      dim: this.dim,
      rows: this.rows,
      xtx: this.gram ? await this.gram.result() : undefined,
      absmax: this.absmax?.result(),
      sqnorm: this.sqnorm?.result(),
      sum: this.sum?.result(),
    };
  }
}
