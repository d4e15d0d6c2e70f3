// The live job page (docs/llms-full.md, "Live job page"): sign in, the job list, one job.
// Routes live in the fragment (#/jobs, #/job/<id>); the API key never does.

import { getJson, storedKey, storeKey, forgetKey, AuthError } from "./api.js";
import { ListView } from "./listview.js";
import { JobView } from "./jobview.js";

const $ = (id) => document.getElementById(id);
let current = null;

function show(section) {
  for (const id of ["signin", "jobs", "job"]) $(id).hidden = id !== section;
  $("nav").hidden = section === "signin";
}

function signedOut(err) {
  if (current) current.stop();
  current = null;
  forgetKey();
  $("signin-error").textContent = err && err.message ? `Signed out: ${err.message}` : "";
  show("signin");
  $("key").focus();
}

async function whoAmI() {
  const account = await getJson("/api/v1/account");
  $("who").textContent = account.name || account.id || "";
}

function route() {
  if (current) current.stop();
  current = null;
  if (!storedKey()) return signedOut();
  const match = /^#\/job\/([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (match) {
    show("job");
    current = new JobView($("job"), match[1], signedOut);
    current.start();
  } else {
    show("jobs");
    current = new ListView($("jobs"), signedOut);
    current.start();
  }
}

async function signIn(event) {
  event.preventDefault();
  const input = $("key");
  const key = input.value.trim();
  input.value = "";
  if (!key) return;
  storeKey(key);
  try {
    await whoAmI();
  } catch (err) {
    forgetKey();
    $("signin-error").textContent = err instanceof AuthError ? "That key was not accepted." : `Could not sign in: ${err.message}`;
    return;
  }
  $("signin-error").textContent = "";
  if (!window.location.hash) window.location.hash = "#/jobs";
  route();
}

$("signin-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => signedOut());
window.addEventListener("hashchange", route);
if (storedKey()) whoAmI().catch((err) => err instanceof AuthError && signedOut(err));
route();
