import { recipeTests } from './recipe-tests.js';

recipeTests(2);
