import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { compilePattern, compileTargets, noMatchMessage, selectLayers, selectLayersOrThrow } from '../../src/recipe/targets.js';

const LAYERS = [
  'model.layers.0.self_attn.q_proj',
  'model.layers.0.self_attn.k_proj',
  'model.layers.0.self_attn.o_proj',
  'model.layers.0.mlp.gate_proj',
  'model.layers.0.mlp.down_proj',
  'model.layers.1.self_attn.q_proj',
  'model.layers.1.mlp.gate_proj',
  'model.layers.1.mlp.down_proj',
  'model.layers.10.mlp.down_proj',
  'lm_head',
];

describe('targets', () => {
  it('"*" selects every layer and keeps the model order', () => {
    expect(selectLayers(LAYERS, ['*'])).toEqual(LAYERS);
    expect(selectLayers([...LAYERS].reverse(), ['*'])).toEqual([...LAYERS].reverse());
  });

  it('a glob matches the whole name; * crosses dots; ? is one character; . is literal', () => {
    expect(selectLayers(LAYERS, ['model.layers.*.mlp.*'])).toEqual([
      'model.layers.0.mlp.gate_proj',
      'model.layers.0.mlp.down_proj',
      'model.layers.1.mlp.gate_proj',
      'model.layers.1.mlp.down_proj',
      'model.layers.10.mlp.down_proj',
    ]);
    expect(selectLayers(LAYERS, ['*down_proj'])).toHaveLength(3);
    expect(selectLayers(LAYERS, ['model.layers.?.mlp.down_proj'])).toEqual(['model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj']);
    expect(selectLayers(LAYERS, ['q_proj'])).toEqual([]); // anchored: no substring match
    expect(compilePattern('model.layers').test('modelXlayers')).toBe(false);
    expect(compilePattern('a+b(c)').test('a+b(c)')).toBe(true);
    expect(compilePattern('**.q_proj').test('model.layers.0.self_attn.q_proj')).toBe(true);
  });

  it('re: is a JavaScript regex matched against the whole name', () => {
    expect(selectLayers(LAYERS, ['re:.*self_attn\\.(q|k)_proj'])).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.k_proj',
      'model.layers.1.self_attn.q_proj',
    ]);
    expect(selectLayers(LAYERS, ['re:q_proj'])).toEqual([]);
    expect(selectLayers(LAYERS, ['re:model\\.layers\\.\\d\\..*down_proj'])).toEqual(['model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj']);
  });

  it('ignore removes layers that a target selected; several targets are a union', () => {
    const m = compileTargets(['*proj', 'lm_head'], ['re:.*\\.0\\..*', 'lm_head']);
    expect(LAYERS.filter((n) => m.matches(n))).toEqual(selectLayers(LAYERS, ['*proj', 'lm_head'], ['re:.*\\.0\\..*', 'lm_head']));
    expect(selectLayers(LAYERS, ['*proj', 'lm_head'], ['re:.*\\.0\\..*'])).toEqual([
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.mlp.gate_proj',
      'model.layers.1.mlp.down_proj',
      'model.layers.10.mlp.down_proj',
      'lm_head',
    ]);
  });

  it('an invalid regex is a user error naming the pattern', () => {
    expect(() => compilePattern('re:model.(')).toThrow(UserError);
    expect(() => compilePattern('re:model.(')).toThrow(/invalid regular expression "re:model\.\("/);
  });

  it('zero matches name the targets field and show a layer name like the one meant', () => {
    expect(noMatchMessage('passes[0]', ['model.layers.*.mlp.nope'], [], LAYERS)).toBe(
      'passes[0].targets ["model.layers.*.mlp.nope"] matched no layer (layers look like "model.layers.0.mlp.gate_proj")',
    );
    expect(noMatchMessage('passes[2]', ['re:nothing'], [], LAYERS)).toBe(
      'passes[2].targets ["re:nothing"] matched no layer (layers look like "model.layers.0.self_attn.q_proj")',
    );
    expect(noMatchMessage('passes[1]', ['*mlp*'], ['*'], LAYERS)).toBe(
      'passes[1].targets ["*mlp*"] matched 5 layers, but passes[1].ignore ["*"] excludes all of them',
    );
    expect(noMatchMessage('passes[0]', ['*'], [], [])).toBe('passes[0].targets ["*"] matched no layer (the model has no layers this pass can change)');
    expect(() => selectLayersOrThrow('passes[0]', LAYERS, ['nope'])).toThrow(UserError);
    expect(selectLayersOrThrow('passes[0]', LAYERS, ['lm_head'])).toEqual(['lm_head']);
  });
});
