// The agreed rule set, small on purpose (issue 17): each rule catches a real defect class, and the
// whole tree passes. Type-aware, so floating promises are seen. `npm test` runs it.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'lab-ui/dist/', 'certs/generated/', '**/*.js'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser, parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Dead code: an unused import, variable or parameter (a leading _ marks one kept on purpose).
      '@typescript-eslint/no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // A promise nobody awaits or handles: its rejection is lost (mark a deliberate one with `void`).
      '@typescript-eslint/no-floating-promises': 'error',
      // == and != coerce; `== null` (null or undefined) is the one idiom kept.
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // The library reports through events and errors, never the console.
      'no-console': 'error',
    },
  },
  // The CLI, the benchmarks, the lab's tools and the tests talk to a person.
  { files: ['app/**', 'benchmarks/**', 'lab-ui/**', 'test-support/**', '**/*.test.ts'], rules: { 'no-console': 'off' } },
);
