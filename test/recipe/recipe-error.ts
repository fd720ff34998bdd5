import { expect } from 'vitest';
import { parseRecipe, RecipeError } from '../../src/recipe/parse.js';
import { PASSES } from '../../src/pipeline/registry.js';

/** The RecipeError a recipe text is rejected with (failing the test when it is accepted). */
export function recipeError(text: string): RecipeError {
  try {
    parseRecipe(text, 'recipe.yaml', PASSES);
  } catch (e) {
    expect(e).toBeInstanceOf(RecipeError);
    return e as RecipeError;
  }
  throw new Error('expected the recipe to be rejected');
}
