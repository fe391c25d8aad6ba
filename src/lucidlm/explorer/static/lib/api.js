/**
 * Talking to the Explorer's JSON API (same origin, so only 127.0.0.1 is ever asked).
 * Every error the server sends is {"error": {"message"}}; it becomes an ApiError with that message,
 * which the panels show in the page.
 */

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function handle(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`the server answered ${response.status} without JSON`, response.status);
  }
  if (!response.ok) {
    throw new ApiError(body?.error?.message ?? `request failed (${response.status})`, response.status);
  }
  return body;
}

/** GET /api/<path>?params -> parsed JSON. */
export async function get(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  return handle(await fetch(`/api/${path}${query ? "?" + query : ""}`));
}

/** POST /api/<path> with a JSON body -> parsed JSON. */
export async function post(path, body) {
  return handle(await fetch(`/api/${path}`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  }));
}
