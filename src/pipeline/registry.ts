import type { Pass } from '../pass/pass.js';
import { kronecker } from '../decompose/kronecker.js';
import { distillKd } from '../distill/kd.js';
import { svdPass } from '../decompose/svd.js';
import { shareEmbeddings } from '../share/embeddings.js';
import { shareLayers } from '../share/layers.js';
import { magnitude } from '../prune/magnitude.js';
import { channels } from '../prune/channels.js';
import { dequantizePass } from '../quantize/dequantize.js';
import { heads } from '../prune/heads.js';
import { layers } from '../prune/layers.js';
import { sparsegpt } from '../prune/sparsegpt.js';
import { wanda } from '../prune/wanda.js';
import { gptq } from '../quantize/gptq.js';
import { cast } from '../quantize/cast.js';
import { embeddings } from '../quantize/embeddings.js';
import { f16 } from '../quantize/f16.js';
import { rtn } from '../quantize/rtn.js';
import { smoothquant } from '../quantize/smoothquant.js';
import { rotate } from '../quantize/rotate.js';
import { awq } from '../quantize/awq.js';
import { mixed } from '../quantize/mixed.js';
import { reconstruct } from '../quantize/reconstruct.js';
import { trellis } from '../quantize/trellis.js';
import { w8a8 } from '../quantize/w8a8.js';

/** Every pass pare knows, in the order `pare recipe passes` lists them. */
export const PASSES: readonly Pass[] = [magnitude, sparsegpt, wanda, channels, heads, layers, rtn, gptq, awq, mixed, trellis, reconstruct, smoothquant, rotate, w8a8, cast, embeddings, f16, dequantizePass, svdPass, kronecker, shareEmbeddings, shareLayers, distillKd];

function checkUnique(passes: readonly Pass[]): void {
  const seen = new Set<string>();
  for (const p of passes) {
    if (seen.has(p.id)) throw new Error(`pass id ${p.id} is registered twice`);
    seen.add(p.id);
  }
}
checkUnique(PASSES);
