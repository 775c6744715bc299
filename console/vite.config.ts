// The console is served by ember under /console/ (docs/console.md). No inline scripts and no
// data: URIs, so the page runs under a Content-Security-Policy of 'self' only.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  build: {
    outDir: process.env.EMBER_CONSOLE_OUT ?? "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
