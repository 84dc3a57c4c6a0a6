/*
 * Constants shared by the dashboard's pages and charts.
 */

export const SVG_NS = 'http://www.w3.org/2000/svg';
export const TOKEN_KEY = 'tuner.token';
export const LIST_REFRESH_MS = 3000;
export const PAGE_SIZE = 50;
/** Learning curves drawn for the best trials. */
export const TOP_CURVES = 10;
/** Running trials whose curves are drawn while a study is live. */
export const RUNNING_CURVES = 3;
/** Pruned trials whose curves are drawn when asked (the latest ones). */
export const PRUNED_CURVES = 20;
/** Parallel coordinates: best trials drawn as individual coloured lines. */
export const PC_MAX_LINES = 1000;
/** Refetch the importance at most this often while a study runs. */
export const IMPORTANCE_EVERY_MS = 10000;
const FINAL_STATES = new Set(['completed', 'pruned', 'failed']);
export const TRIAL_STATES = ['pending', 'running', 'completed', 'pruned', 'failed'];
export const PALETTE = [
  '#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
  '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#393b79', '#ad494a',
  '#637939', '#843c39', '#3182bd', '#e6550d',
];
// Viridis, sampled at 9 points (the colour map is public domain, CC0).
export const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
