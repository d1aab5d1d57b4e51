"""The page's own style sheet and start-up script (served inline: nothing is loaded from
outside the server)."""

CSS = """
.gradio-container { max-width: 1280px !important; }
#rag-title h1 { margin: 0; font-size: 1.35rem; }
#rag-title p { margin: 0.15rem 0 0; color: var(--body-text-color-subdued); }
.rag-answer, .rag-refusal, .rag-error, .rag-pending, .rag-partial, .rag-question {
  line-height: 1.55; overflow-wrap: anywhere;
}
.rag-cite { color: var(--color-accent); font-weight: 600; font-size: 0.75em; }
code.rag-code, pre.rag-code {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.88em;
  background: var(--background-fill-secondary); border-radius: 4px;
}
code.rag-code { padding: 0.05rem 0.3rem; }
pre.rag-code { padding: 0.5rem 0.75rem; margin: 0.35rem 0; white-space: pre-wrap; }
.rag-answer .rag-cite { cursor: pointer; text-decoration: underline dotted; }
.rag-copytext, #rag-regenerate { display: none !important; }
.rag-actions { margin-left: 0.6rem; }
.rag-action { cursor: pointer; color: var(--color-accent); margin-right: 0.6rem; }
.rag-action:hover { text-decoration: underline; }
.rag-source { border-radius: 6px; }
.rag-flash { animation: rag-flash 1.6s ease-out; }
@keyframes rag-flash {
  0% { box-shadow: 0 0 0 3px #f59e0b; } 100% { box-shadow: 0 0 0 3px transparent; }
}
.rag-meta { color: var(--body-text-color-subdued); font-size: 0.8em; margin-top: 0.35rem; }
.rag-partial::after { content: "▍"; animation: rag-blink 1s steps(1) infinite; }
@keyframes rag-blink { 50% { opacity: 0; } }
.rag-pending, .rag-queued { color: var(--body-text-color-subdued); }
.rag-queued { font-style: italic; font-size: 0.9em; }
.rag-refusal {
  border-left: 4px solid #d97706; background: rgba(217, 119, 6, 0.10);
  padding: 0.5rem 0.75rem; border-radius: 6px;
}
.rag-refusal-label, .rag-error-label {
  display: inline-block; font-weight: 700; font-size: 0.8em; text-transform: uppercase;
  letter-spacing: 0.03em; margin-bottom: 0.2rem;
}
.rag-refusal-label { color: #b45309; }
.rag-error {
  border-left: 4px solid #dc2626; background: rgba(220, 38, 38, 0.08);
  padding: 0.5rem 0.75rem; border-radius: 6px;
}
.rag-error-label { color: #b91c1c; margin-right: 0.4rem; }
.rag-sources { display: flex; flex-direction: column; gap: 0.6rem; }
.rag-source-head { font-size: 0.85em; margin-bottom: 0.25rem; overflow-wrap: anywhere; }
.rag-source-n { font-weight: 700; color: var(--color-accent); }
.rag-source-title { font-size: 0.8em; color: var(--body-text-color-subdued); }
.rag-chunk {
  font-size: 0.85em; line-height: 1.5; padding: 0.5rem 0.65rem; border-radius: 6px;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  max-height: 16rem; overflow-y: auto; overflow-wrap: anywhere; white-space: normal;
}
.rag-chunk mark { background: #fde68a; color: #1f2937; padding: 0 1px; border-radius: 2px; }
.rag-stats .rag-counts { font-size: 1rem; }
.rag-source-list {
  margin: 0.4rem 0 0; padding-left: 1.1rem; max-height: 12rem; overflow-y: auto;
  font-size: 0.85em; overflow-wrap: anywhere;
}
.rag-empty { color: var(--body-text-color-subdued); font-size: 0.9em; margin-top: 0.4rem; }
.rag-ok { color: #15803d; }
.rag-warn { color: #b45309; }
.rag-problems { margin: 0; padding-left: 1.1rem; overflow-wrap: anywhere; }
.rag-ingest { font-size: 0.9em; }
#rag-chat { flex-grow: 1; }
#rag-upload-note, #rag-upload-note *, #rag-upload-status, #rag-upload-status * {
  min-height: 0 !important;
}
#rag-upload-note .html-container, #rag-upload-status .html-container {
  padding-top: 0 !important; padding-bottom: 0 !important;
}
/* "New chat" clears the conversation; Gradio's own clear icon would cover the top message. */
#rag-chat .icon-button-wrapper.top-panel { display: none !important; }
/* Gradio's footer leaves a lone separator dot after "Use via API". */
footer .divider, footer .record.hidden { display: none !important; }
/* The settings accordion's arrow points right when closed, down when open. */
#rag-settings .label-wrap .icon[style*="rotate(90deg)"] { transform: rotate(-90deg) !important; }
/* Example questions look like something to click. */
#rag-chat .examples .example {
  border: 1px solid var(--border-color-accent, #c7d2fe); border-radius: 999px;
  background: var(--background-fill-primary); padding: 0.35rem 0.9rem; cursor: pointer;
}
#rag-chat .examples .example:hover { background: var(--color-accent-soft, #eef2ff); }
#rag-input-row { align-items: stretch; }
@media (max-width: 640px) {
  #rag-input-row { flex-wrap: nowrap !important; gap: 6px !important; }
  #rag-input-row > button { min-width: 0 !important; padding-left: 10px !important;
                            padding-right: 10px !important; flex: 0 0 auto !important; }
  #rag-input-row > .form { min-width: 0 !important; }
  #rag-title { padding-left: 36px; }
  #rag-title p { display: none; }
  .rag-chunk { max-height: 12rem; }
  #rag-chat .message-row {
    margin-left: 2px !important; margin-right: 2px !important;
    max-width: calc(100% - 4px) !important;
  }
}
"""


# On load: a phone screen is too narrow for the side panel and the chat together, so it starts
# closed; and a click on an answer's [n] opens that answer's Sources block and scrolls to
# source n (its quote is already highlighted), flashing it.
ON_LOAD = r"""
() => {
  if (window.innerWidth < 768) {
    const toggle = document.querySelector('.sidebar.open .toggle-button, '
      + '.sidebar.open button[aria-label="Toggle Sidebar"]');
    if (toggle) toggle.click();
  }
  if (window.__ragCitations) return;
  window.__ragCitations = true;
  const sourcesAfter = (cite) => {
    const groups = document.querySelectorAll('#rag-chat .thought-group');
    for (const group of groups) {
      if (cite.compareDocumentPosition(group) & Node.DOCUMENT_POSITION_FOLLOWING) return group;
    }
    return null;
  };
  document.addEventListener('click', (event) => {
    const action = event.target.closest && event.target.closest('#rag-chat .rag-action');
    if (action) {
      const message = action.closest('.rag-answer, .rag-refusal');
      if (action.classList.contains('rag-copy') && message) {
        const holder = document.createElement('div');
        holder.innerHTML = message.querySelector('.rag-copytext').innerHTML
          .replace(/<br\s*\/?>/gi, '\n');
        const text = holder.textContent;
        const done = () => { action.textContent = 'Copied'; window.__ragCopied = text;
                             setTimeout(() => { action.textContent = 'Copy'; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, done);
        } else {
          done();
        }
      } else if (action.classList.contains('rag-regen')) {
        const trigger = document.querySelector('#rag-regenerate');
        if (trigger) trigger.click();
      }
      return;
    }
    const cite = event.target.closest && event.target.closest('#rag-chat .rag-answer sup.rag-cite');
    if (!cite) return;
    const n = cite.textContent.replace(/[^0-9]/g, '');
    const group = sourcesAfter(cite);
    if (!group) return;
    const find = () => Array.from(group.querySelectorAll('.rag-source')).find(
      (el) => (el.querySelector('.rag-source-n') || {}).textContent === '[' + n + ']');
    const visible = (el) => el && el.offsetParent !== null;
    if (!visible(find())) {
      const title = group.querySelector('.title');
      if (title) title.click();
    }
    let tries = 0;
    const show = () => {
      const target = find();
      if (visible(target)) {
        target.scrollIntoView({block: 'center', behavior: 'smooth'});
        target.classList.remove('rag-flash');
        void target.offsetWidth;
        target.classList.add('rag-flash');
      } else if (++tries < 40) {
        setTimeout(show, 50);
      }
    };
    show();
  });
}
"""
