// Progressive enhancement only: every page works without JavaScript.
// Loaded as a module (deferred) from base.html; no inline script is needed,
// so the Content-Security-Policy can keep script-src 'self'.
import { initAll } from './nhsuk-frontend.min.js';

document.body.classList.add('js-enabled', 'nhsuk-frontend-supported');
initAll();
