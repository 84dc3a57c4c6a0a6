/*
 * The page on screen, so that whatever replaces it (the router, the token form) closes
 * it first (its timers, streams and listeners).
 */

let current = null;

/** Closes the page on screen, if any. */
export function closePage() {
  if (current) {
    current.destroy();
    current = null;
  }
}

/** Puts a page on screen (after `closePage`). */
export function showPage(page) {
  current = page;
}
