// The browser benchmarks (end2end/bench/): the same settings as the test
// suite, another directory. Run by ./dev test-release against a release build.
import base from './playwright.config';
import { defineConfig } from '@playwright/test';

export default defineConfig({ ...base, testDir: './bench', outputDir: './test-results/bench' });
