// askbase chat: ask through /api/ask, render answers with citation links, keep the history sidebar live.
// No framework and no network beyond this origin, so the page works offline on the local stack.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var form = document.getElementById("ask-form");
  var input = document.getElementById("question");
  var button = document.getElementById("ask-button");
  var log = document.getElementById("messages");
  var status = document.getElementById("ask-status");
  var historyList = document.getElementById("history-list");
  var busy = false;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  // Same rules as services/qa/answer_html.py: "> " lines are quotes, [n] links to source n.
  function inline(parent, text, sources) {
    var re = /\[(\d{1,2})\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var n = parseInt(m[1], 10);
      if (n >= 1 && n <= sources.length) {
        parent.appendChild(el("a", { "class": "cite", href: sources[n - 1].url, target: "_blank",
          rel: "noopener noreferrer", title: sources[n - 1].title, text: "[" + n + "]" }));
      } else {
        parent.appendChild(document.createTextNode(m[0]));
      }
      last = re.lastIndex;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function lines(parent, list, sources) {
    list.forEach(function (line, i) {
      if (i) parent.appendChild(el("br"));
      inline(parent, line, sources);
    });
  }

  function renderAnswer(text, sources) {
    var box = el("div", { "class": "answer-text" });
    text.trim().split(/\n\s*\n/).forEach(function (block) {
      var rows = block.split("\n");
      var head = rows.filter(function (l) { return l.charAt(0) !== ">"; });
      var quote = rows.filter(function (l) { return l.charAt(0) === ">"; }).map(function (l) { return l.slice(1).trim(); });
      if (head.length) { var p = el("p"); lines(p, head, sources); box.appendChild(p); }
      if (quote.length) { var q = el("p"); lines(q, quote, sources); box.appendChild(el("blockquote", {}, [q])); }
    });
    return box;
  }

  function renderSources(sources) {
    var list = el("ol");
    sources.forEach(function (s) {
      var item = el("li", {}, [el("a", { href: s.url, target: "_blank", rel: "noopener noreferrer", text: s.title })]);
      if (s.snippet) item.appendChild(el("span", { "class": "snippet", text: s.snippet }));
      list.appendChild(item);
    });
    return el("div", { "class": "sources" }, [el("h2", { "class": "sources-heading", text: "Sources" }), list]);
  }

  function addMessage(role, text, sources) {
    var item = el("li", { "class": "message message-" + role }, [
      el("span", { "class": "visually-hidden", text: role === "user" ? "You asked:" : "Answer:" })
    ]);
    if (role === "user") item.appendChild(el("p", { text: text }));
    else {
      item.appendChild(renderAnswer(text, sources || []));
      if (sources && sources.length) item.appendChild(renderSources(sources));
    }
    log.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function setBusy(on) {
    busy = on;
    button.disabled = on;
    log.setAttribute("aria-busy", on ? "true" : "false");
    form.classList.toggle("loading", on);
    button.textContent = on ? "Asking…" : "Ask";
    status.classList.remove("error");
    status.classList.toggle("busy", on);
    status.textContent = on ? "Searching the knowledge base…" : "";
  }

  function showError(message) {
    status.textContent = message;
    status.classList.add("error");
  }

  function api(method, url, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var err = new Error(data.error || ("The server answered " + resp.status));
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  function setConversation(id) {
    form.setAttribute("data-conversation-id", id);
    var links = document.getElementById("export-links");
    document.getElementById("export-md").href = "/api/conversations/" + encodeURIComponent(id) + "/export?format=md";
    document.getElementById("export-json").href = "/api/conversations/" + encodeURIComponent(id) + "/export?format=json";
    links.hidden = false;
    var path = "/c/" + encodeURIComponent(id);
    if (location.pathname !== path) history.replaceState(null, "", path);
  }

  function refreshHistory() {
    var current = form.getAttribute("data-conversation-id");
    return api("GET", "/api/conversations").then(function (data) {
      historyList.textContent = "";
      if (!data.conversations.length) historyList.appendChild(el("li", { "class": "empty", text: "No conversations yet." }));
      data.conversations.forEach(function (c) {
        var link = el("a", { href: "/c/" + encodeURIComponent(c.id), text: c.title });
        var item = el("li", { "data-id": c.id }, [link,
          el("time", { datetime: c.updated_at, text: c.updated_at.slice(0, 16).replace("T", " ") }),
          el("button", { type: "button", "class": "delete link-button", "data-id": c.id, "aria-label": "Delete conversation: " + c.title, text: "Delete" })]);
        if (c.id === current) { item.className = "current"; link.setAttribute("aria-current", "page"); }
        historyList.appendChild(item);
      });
    }).catch(function () { /* the sidebar is a convenience; the answer is already shown */ });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;
    var question = input.value.trim();
    if (!question) { showError("Type a question first."); input.focus(); return; }
    addMessage("user", question);
    setBusy(true);
    var body = { question: question };
    var cid = form.getAttribute("data-conversation-id");
    if (cid) body.conversation_id = cid;
    api("POST", "/api/ask", body).then(function (data) {
      input.value = "";
      addMessage("assistant", data.answer, data.sources);
      setConversation(data.conversation_id);
      setBusy(false);
      status.textContent = "Answer ready.";
      refreshHistory();
    }).catch(function (err) {
      setBusy(false);
      showError(err.status === 429 ? "Too many questions in a minute: wait a little and try again." : err.message);
    }).then(function () { input.focus(); });
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  historyList.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.classList || !target.classList.contains("delete")) return;
    var id = target.getAttribute("data-id");
    if (!window.confirm("Delete this conversation?")) return;
    api("DELETE", "/api/conversations/" + encodeURIComponent(id)).then(function () {
      if (form.getAttribute("data-conversation-id") === id) { location.href = "/"; return; }
      refreshHistory();
    }).catch(function (err) { showError(err.message); });
  });

  var clearAll = document.getElementById("clear-all");
  if (clearAll) clearAll.addEventListener("click", function () {
    if (!window.confirm("Delete all your conversations? This cannot be undone.")) return;
    api("DELETE", "/api/conversations").then(function () { location.href = "/"; })
      .catch(function (err) { showError(err.message); });
  });
})();
