import type { LinearLayer } from '../model/linears.js';

/**
 * Layers grouped into the model's blocks (`layers.3`, `h.11`, `blocks.2`), in graph order. A layer
 * outside any block (lm_head, a conv) is its own group. Sequential calibration compresses a
 * group, then computes the next group's inputs through it.
 */
const BLOCK = /^(.*?(?:^|\.)(?:layers|layer|h|blocks|block)\.\d+)(?:\.|$)/;

export function blockKey(name: string): string {
  return BLOCK.exec(name)?.[1] ?? name;
}

export interface LayerGroup {
  key: string;
  layers: LinearLayer[];
}

export function groupIntoBlocks(layers: readonly LinearLayer[]): LayerGroup[] {
  const groups: LayerGroup[] = [];
  const byKey = new Map<string, LayerGroup>();
  for (const layer of layers) {
    const key = blockKey(layer.name);
    let g = byKey.get(key);
    if (!g) {
      g = { key, layers: [] };
      byKey.set(key, g);
      groups.push(g);
    }
    g.layers.push(layer);
  }
  return groups;
}
