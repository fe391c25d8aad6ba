/**
 * Each panel's state lives in the page's URL (?panel=attention&model=...&text=...), so a reload or
 * a shared link gives the same view. `get` reads a key, `set` writes keys (null removes one)
 * without adding a history entry per keystroke.
 */

export function get(key, fallback = null) {
  const value = new URLSearchParams(location.search).get(key);
  return value === null ? fallback : value;
}

export function getInt(key, fallback) {
  const value = Number.parseInt(get(key, ""), 10);
  return Number.isFinite(value) ? value : fallback;
}

export function getFloat(key, fallback) {
  const value = Number.parseFloat(get(key, ""));
  return Number.isFinite(value) ? value : fallback;
}

export function set(values) {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(values)) {
    if (value === null || value === undefined || value === "") params.delete(key);
    else params.set(key, String(value));
  }
  history.replaceState(null, "", `${location.pathname}?${params}`);
}
