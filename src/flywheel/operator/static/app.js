// Progressive enhancement only: every page reads without this file. It adds live updates
// (server-sent events), passkey ceremonies (WebAuthn needs script) and copy buttons.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

function b64urlToBuffer(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "===".slice((base64.length + 3) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
}

function bufferToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  bytes.forEach((b) => { raw += String.fromCharCode(b); });
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(json) {
  if (window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  const options = Object.assign({}, json);
  options.challenge = b64urlToBuffer(json.challenge);
  options.user = Object.assign({}, json.user, { id: b64urlToBuffer(json.user.id) });
  options.excludeCredentials = (json.excludeCredentials || []).map(
    (c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));
  return options;
}

function requestOptions(json) {
  if (window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  const options = Object.assign({}, json);
  options.challenge = b64urlToBuffer(json.challenge);
  options.allowCredentials = (json.allowCredentials || []).map(
    (c) => Object.assign({}, c, { id: b64urlToBuffer(c.id) }));
  return options;
}

function credentialJSON(credential) {
  if (credential.toJSON) { return credential.toJSON(); }
  const response = {};
  for (const key of ["clientDataJSON", "attestationObject", "authenticatorData", "signature",
    "userHandle"]) {
    if (credential.response[key]) { response[key] = bufferToB64url(credential.response[key]); }
  }
  return { id: credential.id, rawId: bufferToB64url(credential.rawId), type: credential.type,
    response, clientExtensionResults: credential.getClientExtensionResults() };
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf() },
    body: body === undefined ? "" : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) { throw new Error(data.message || response.statusText); }
  return data;
}

function say(text) {
  const status = document.getElementById("passkey-status");
  if (status) { status.textContent = text; }
}

async function registerPasskey() {
  try {
    const options = await api("/_api/v1/passkeys/options");
    const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    const name = (document.getElementById("passkey-name") || {}).value || "passkey";
    await api("/_api/v1/passkeys", { credential: credentialJSON(credential), name });
    say("Passkey registered.");
    window.location.reload();
  } catch (e) {
    say("Passkey not registered: " + e.message);
  }
}

async function signInWithPasskey(button) {
  try {
    const options = await api("/_api/v1/signin/passkey/options");
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
    await api("/_api/v1/signin/passkey", { credential: credentialJSON(credential) });
    window.location.assign(button.dataset.next || "/_ui/");
  } catch (e) {
    say("Not signed in: " + e.message);
  }
}

function live() {
  if (!window.EventSource) { return; }
  document.querySelectorAll("[data-live]").forEach((section) => {
    const source = new EventSource(section.dataset.live + window.location.search);
    source.addEventListener("update", (event) => {
      section.innerHTML = event.data;
      section.dataset.updated = String(Date.now());
    });
  });
}

function copyButtons() {
  if (!navigator.clipboard) { return; }
  document.querySelectorAll("[data-copy]").forEach((block) => {
    const button = document.createElement("button");
    button.className = "small copy";
    button.textContent = "Copy";
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(block.textContent.trim());
      button.textContent = "Copied";
    });
    block.insertAdjacentElement("afterend", button);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const register = document.getElementById("passkey-register");
  if (register) { register.addEventListener("click", registerPasskey); }
  const signin = document.getElementById("passkey-signin");
  if (signin) { signin.addEventListener("click", () => signInWithPasskey(signin)); }
  live();
  copyButtons();
});
