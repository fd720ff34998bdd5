import type { DatasetSpec } from './spec.js';

/** The files a dataset spec names, by field, as written (relative paths resolve against the spec's folder). */
export function specFiles(spec: DatasetSpec): { field: string; path: string }[] {
  const named = (field: string, path: string | undefined) => (path === undefined ? [] : [{ field, path }]);
  switch (spec.kind) {
    case 'text':
      return [...named('path', spec.path), ...named('tokenizer', spec.tokenizer)];
    case 'tokens':
      return named('path', spec.path);
    case 'idx':
      return [...named('images', spec.images), ...named('labels', spec.labels)];
    case 'npy':
      return [...named('path', spec.path), ...named('labels', spec.labels), ...named('targets', spec.targets)];
    case 'random':
      return [];
    case 'wav-folder':
      return named('path', spec.path);
    case 'image-folder':
      return [...named('path', spec.path), ...named('labels', spec.labels), ...named('targets', spec.targets)];
    case 'images':
      return [...named('path', spec.path), ...named('labels', spec.labels)];
  }
}
