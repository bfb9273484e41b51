// A browser client of the Auth API with nothing but fetch.
//
// - The API base URL comes from ?api=... (e.g. index.html?api=http://localhost:8000), else
//   DEFAULT_API. The API must list this page's origin in CORS_ORIGINS (API.md §2.5).
// - Every request is sent with credentials: 'include', so the browser stores and sends the
//   HttpOnly refresh_token cookie (Path=/api/v1/auth, SameSite=Strict). This page cannot read
//   that cookie and never handles the refresh token: refresh and logout send no body.
// - The access token lives in a variable only (no localStorage, no sessionStorage, no cookie):
//   after a reload, Refresh gets a new one through the cookie.
//
// Each answer is shown in #output as JSON { action, status, body } (status 0 and an error
// when fetch itself failed: API down, or the answer was refused by CORS).

const DEFAULT_API = 'http://localhost:8000'
const API = (new URLSearchParams(window.location.search).get('api') ?? DEFAULT_API).replace(/\/+$/, '')
const AUTH = `${API}/api/v1/auth`

/** The current access token: memory only. */
let accessToken = null
let seq = 0

const $ = (id) => document.getElementById(id)
const output = $('output')

function show (result) {
  output.textContent = JSON.stringify(result, null, 2)
  output.dataset.action = result.action
  output.dataset.status = String(result.status)
  output.dataset.seq = String(++seq)
  $('token-state').textContent = accessToken === null ? 'none' : `${accessToken.slice(0, 16)}…`
}

/**
 * One API call. `body` is sent as JSON when given; `bearer` adds the access token.
 * @returns {Promise<{ action: string, status: number, body?: unknown, error?: string }>}
 */
async function call (action, method, path, { body, bearer = false } = {}) {
  const headers = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (bearer && accessToken !== null) headers.authorization = `Bearer ${accessToken}`
  let result
  try {
    const response = await fetch(`${AUTH}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'include'
    })
    const text = await response.text()
    let parsed = null
    try {
      parsed = text === '' ? null : JSON.parse(text)
    } catch {
      parsed = text
    }
    result = { action, status: response.status, body: parsed }
  } catch (error) {
    // A network error, or an answer CORS does not let this page read: fetch tells nothing more.
    result = { action, status: 0, error: String(error) }
  }
  return result
}

function formValues (form) {
  return Object.fromEntries(new FormData(form).entries())
}

const actions = {
  async signup (form) {
    const { email, password, name } = formValues(form)
    const result = await call('signup', 'POST', '/signup', { body: { email, password, name } })
    if (result.status === 201) $('login-form').elements.namedItem('email').value = result.body.email
    return result
  },
  async login (form) {
    const { email, password, device_name: deviceName } = formValues(form)
    const body = { email, password }
    if (deviceName) body.device_name = deviceName
    const result = await call('login', 'POST', '/login', { body })
    if (result.status === 200) accessToken = result.body.access_token
    return result
  },
  me: () => call('me', 'GET', '/me', { bearer: true }),
  async refresh () {
    // No body: the token is the cookie the browser adds.
    const result = await call('refresh', 'POST', '/refresh')
    if (result.status === 200) accessToken = result.body.access_token
    return result
  },
  sessions: () => call('sessions', 'GET', '/sessions', { bearer: true }),
  async logout () {
    // Ends this browser's session (the cookie's) and clears the cookie.
    const result = await call('logout', 'POST', '/logout')
    if (result.status === 204) accessToken = null
    return result
  }
}

for (const name of ['signup', 'login']) {
  $(`${name}-form`).addEventListener('submit', async (event) => {
    event.preventDefault()
    show(await actions[name](event.currentTarget))
  })
}
for (const name of ['me', 'refresh', 'sessions', 'logout']) {
  $(name).addEventListener('click', async () => show(await actions[name]()))
}

$('api').textContent = API
output.textContent = `Ready: the API is at ${API}.`
output.dataset.ready = 'true'
