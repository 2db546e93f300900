// The console's few behaviours: confirmation dialogs, copy, auto-submitting selects, the playground stream.
document.addEventListener("click", (e) => {
  const opener = e.target.closest("[data-dialog]");
  if (opener) document.getElementById(opener.dataset.dialog).showModal();
  const closer = e.target.closest("[data-close]");
  if (closer) closer.closest("dialog").close();
  const copy = e.target.closest("[data-copy]");
  if (copy) {
    navigator.clipboard.writeText(document.getElementById(copy.dataset.copy).textContent)
      .then(() => { copy.textContent = "Copied"; }, () => { copy.textContent = "Select and copy"; });
  }
});
document.addEventListener("submit", (e) => {
  const form = e.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) e.preventDefault();
});
document.addEventListener("change", (e) => {
  if (e.target.matches("select[data-autosubmit]")) e.target.form.submit();
});

const playground = document.getElementById("playground");
if (playground) {
  playground.addEventListener("submit", async (e) => {
    e.preventDefault();
    const [reasoning, answer, usage] = ["reasoning", "answer", "usage"].map((id) => document.getElementById(id));
    reasoning.textContent = answer.textContent = usage.textContent = "";
    const button = playground.querySelector("button");
    button.disabled = true;
    try {
      const r = await fetch("/console/playground/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": playground.dataset.csrf },
        body: JSON.stringify({ workspace: playground.dataset.workspace, model: playground.model.value,
                               thinking: playground.thinking.checked, message: playground.message.value }),
      });
      if (!r.ok) { answer.textContent = "Error: " + ((await r.json()).error || {}).message; return; }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (const line of lines) {
          if (!line.startsWith("data: {")) continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.error) { answer.textContent += "\n[error] " + chunk.error.message; continue; }
          if (chunk.usage) {
            const u = chunk.usage;
            usage.textContent = `Usage: ${u.prompt_tokens} input tokens (${u.prompt_tokens_details.cached_tokens} cached), ` +
              `${u.completion_tokens} output tokens (${u.completion_tokens_details.reasoning_tokens} reasoning).`;
          }
          const delta = (chunk.choices[0] || {}).delta || {};
          if (delta.reasoning_content) reasoning.textContent += delta.reasoning_content;
          if (delta.content) answer.textContent += delta.content;
        }
      }
    } finally {
      button.disabled = false;
    }
  });
}
