// askbase chat: ask through /api/ask, render answers with citation links, keep the history sidebar live.
// No framework and no network beyond this origin, so the page works offline on the local stack.
//
// What a question looks like while it is answered: the question and a placeholder appear at once; the
// placeholder says when an answer takes a while (Gemini can take seconds). A failed question stays in
// the conversation with the error and Retry / Edit / Remove, and survives a reload of the tab
// (sessionStorage: the server records only answered questions).
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var form = document.getElementById("ask-form");
  var input = document.getElementById("question");
  var button = document.getElementById("ask-button");
  var log = document.getElementById("messages");
  var status = document.getElementById("ask-status");
  var historyList = document.getElementById("history-list");
  var heading = document.getElementById("chat-heading");
  var query = historyList.getAttribute("data-query") || "";
  var historyStatus = document.getElementById("history-status");
  var clearAll = document.getElementById("clear-all");
  var busy = false;
  var SLOW_MS = 4000; // after this long the placeholder says the answer is still coming
  // One list per signed-in user: another account signing in in the same tab must never see (or retry)
  // this one's failed questions. Sign-out also clears the tab's storage (Clear-Site-Data, signin.py).
  var FAILED_KEY = "askbase.failed." + (form.getAttribute("data-owner-key") || "");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  // --- rendering (same markup as chat.html and services/qa/answer_html.py) -------------------------
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
    String(text || "").trim().split(/\n\s*\n/).forEach(function (block) {
      var rows = block.split("\n");
      var head = rows.filter(function (l) { return l.charAt(0) !== ">"; });
      var quote = rows.filter(function (l) { return l.charAt(0) === ">"; }).map(function (l) { return l.slice(1).trim(); });
      if (head.length) { var p = el("p"); lines(p, head, sources); box.appendChild(p); }
      if (quote.length) { var q = el("p"); lines(q, quote, sources); box.appendChild(el("blockquote", {}, [q])); }
    });
    return box;
  }

  // "Page > Section > Sub" → ["Page", "Section › Sub"], like answer_html.source_heading.
  function sourceHeading(s) {
    var parts = String(s.title || s.url || "").split(" > ").map(function (p) { return p.trim(); })
      .filter(function (p) { return p; });
    return [parts[0] || "", parts.slice(1).join(" › ")];
  }

  function renderSources(sources) {
    var list = el("ol", { "class": "source-list" });
    sources.forEach(function (s) {
      var head = sourceHeading(s);
      var link = el("a", { "class": "source-link", href: s.url, target: "_blank", rel: "noopener noreferrer" },
        [el("span", { "class": "source-page", text: head[0] })]);
      if (head[1]) { link.appendChild(document.createTextNode(" ")); link.appendChild(el("span", { "class": "source-section", text: "› " + head[1] })); }
      var item = el("li", { "class": "source" }, [link]);
      if (s.snippet) {
        item.appendChild(el("details", { "class": "source-passage" }, [el("summary", {}, [
          el("span", { "class": "visually-hidden", text: "Passage: " }),
          el("span", { "class": "source-line", text: s.snippet })])]));
      }
      list.appendChild(item);
    });
    return el("div", { "class": "sources" }, [el("h2", { "class": "sources-heading", text: "Sources" }), list]);
  }

  function userMessage(text) {
    return el("li", { "class": "message message-user" }, [
      el("span", { "class": "visually-hidden", text: "You asked:" }), el("p", { "class": "question-text", text: text })]);
  }

  // The row under an answer, like chat.html's answer_actions: copy, and 👍/👎 once the answer has an id.
  function voteButton(value, emoji, label) {
    return el("button", { type: "button", "class": "vote-button", "data-vote": value, "aria-pressed": "false", title: label }, [
      el("span", { "aria-hidden": "true", text: emoji }), el("span", { "class": "visually-hidden", text: label })]);
  }

  function answerActions(item, answerId) {
    var copy = el("button", { type: "button", "class": "copy-answer link-button", text: "Copy answer" });
    if (!answerId) { item.appendChild(el("div", { "class": "answer-actions" }, [copy])); return; }
    item.appendChild(el("div", { "class": "answer-actions", "data-answer-id": answerId }, [copy,
      el("span", { "class": "vote", role: "group", "aria-label": "Was this answer helpful?" }, [
        voteButton("up", "\ud83d\udc4d", "Helpful"), voteButton("down", "\ud83d\udc4e", "Not helpful")]),
      el("button", { type: "button", "class": "vote-comment-open link-button", hidden: "", text: "Add a comment" }),
      el("span", { "class": "vote-status", role: "status" })]));
    var field = "comment-" + answerId;
    item.appendChild(el("form", { "class": "vote-comment", hidden: "" }, [
      el("label", { "for": field, text: "What was wrong or missing? (optional)" }),
      el("textarea", { id: field, name: "comment", rows: "2", maxlength: log.getAttribute("data-comment-max") || "1000" }),
      el("span", { "class": "vote-comment-buttons" }, [
        el("button", { type: "submit", text: "Send" }),
        el("button", { type: "button", "class": "link-button vote-comment-cancel", text: "Cancel" })])]));
  }

  function answerMessage(text, sources, answerId) {
    var item = el("li", { "class": "message message-assistant" }, [el("span", { "class": "visually-hidden", text: "Answer:" })]);
    item.appendChild(renderAnswer(text, sources || []));
    if (sources && sources.length) item.appendChild(renderSources(sources));
    answerActions(item, answerId);
    return item;
  }

  function reveal(item) { item.scrollIntoView({ block: "nearest" }); }

  // --- failed questions that survive a reload ------------------------------------------------------
  function loadFailed() {
    try { return JSON.parse(sessionStorage.getItem(FAILED_KEY) || "[]") || []; } catch (e) { return []; }
  }
  function saveFailed(list) {
    try { sessionStorage.setItem(FAILED_KEY, JSON.stringify(list.slice(-20))); } catch (e) { /* private mode */ }
  }
  function forgetFailed(key) { saveFailed(loadFailed().filter(function (f) { return f.key !== key; })); }

  function showFailure(item, entry) {
    item.classList.add("failed");
    item.setAttribute("data-failed", entry.key);
    var box = el("div", { "class": "message-error", role: "alert" }, [
      el("p", { "class": "error-text" }, [el("strong", { text: "Not answered. " }), entry.error]),
      el("div", { "class": "error-actions" }, [
        el("button", { type: "button", "class": "retry", text: "Retry" }),
        el("button", { type: "button", "class": "edit link-button", text: "Edit" }),
        el("button", { type: "button", "class": "remove link-button", text: "Remove" })])]);
    item.appendChild(box);
    return box;
  }

  function restoreFailed() {
    var cid = form.getAttribute("data-conversation-id") || "";
    loadFailed().forEach(function (entry) {
      if (entry.conversation !== cid) return;
      var item = userMessage(entry.question);
      log.appendChild(item);
      showFailure(item, entry);
      hideWelcome();
    });
  }

  // Retry-After in seconds, or "" (an HTTP date or nothing).
  function waitSeconds(err) { return /^\d+$/.test(err.retryAfter || "") ? err.retryAfter : ""; }

  // What went wrong, for a person. ``what`` names what was limited: "questions" or "requests".
  function errorText(err, what) {
    var wait = waitSeconds(err);
    if (!err.status) return "Could not reach askbase. Check your connection, then retry.";
    if (err.status === 429) {
      return "Too many " + (what || "questions") + " in a minute." + (wait ? " Wait " + wait + " seconds, then retry." : " Wait a little, then retry.");
    }
    if (err.status === 401) return "Your sign-in has expired: reload the page and sign in again.";
    if (err.status === 403) return "Your session has expired: reload the page, then retry.";
    if (err.status === 503) {
      // Starting, no index yet, or storage not answering: a wait, not a fault (the server says which).
      return (err.serverMessage || "askbase is briefly unavailable.") + (wait ? " Retry in about " + wait + " seconds." : " Retry in a moment.");
    }
    if (err.status >= 500) return "askbase hit an error while answering. Retry in a moment.";
    return err.message;
  }

  // --- asking ----------------------------------------------------------------------------------------
  function setBusy(on) {
    busy = on;
    button.disabled = on;
    log.setAttribute("aria-busy", on ? "true" : "false");
    form.classList.toggle("loading", on);
    button.textContent = on ? "Asking…" : "Ask";
  }

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", !!isError);
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
          err.serverMessage = data.error || "";
          err.retryAfter = resp.headers.get("Retry-After");
          throw err;
        }
        return data;
      });
    }, function () { var err = new Error("network"); err.status = 0; throw err; });
  }

  function hideWelcome() {
    var welcome = document.getElementById("welcome");
    if (welcome) welcome.hidden = true;
  }

  function ask(question) {
    if (busy) return;
    hideWelcome();
    input.focus(); // the Retry or starter button that asked is about to go: focus must not fall to <body>
    setStatus("", false);
    var item = userMessage(question);
    var placeholder = el("li", { "class": "message message-assistant pending", "aria-busy": "true" }, [
      el("span", { "class": "visually-hidden", text: "Answer:" }),
      el("p", { "class": "pending-text", text: "Looking through the docs…" })]);
    log.appendChild(item);
    log.appendChild(placeholder);
    reveal(placeholder);
    setBusy(true);
    var slow = window.setTimeout(function () {
      placeholder.querySelector(".pending-text").textContent = "Still working on it: answers written by an AI model can take several seconds.";
    }, SLOW_MS);
    var body = { question: question };
    var cid = form.getAttribute("data-conversation-id");
    if (cid) body.conversation_id = cid;
    return api("POST", "/api/ask", body).then(function (data) {
      var answer = answerMessage(data.answer, data.sources, data.answer_id);
      log.replaceChild(answer, placeholder);
      if (!cid) setTitle(question.length > 80 ? question.slice(0, 79) + "…" : question); // until the history says
      setConversation(data.conversation_id);
      setStatus("Answer ready.", false);
      reveal(answer);
      refreshHistory();
    }).catch(function (err) {
      log.removeChild(placeholder);
      var gone = err.status === 404 && cid; // deleted in another tab, or expired: asking there again cannot work
      if (gone) leaveConversation();
      var entry = { key: String(Date.now()) + Math.random().toString(36).slice(2, 8), question: question,
        conversation: form.getAttribute("data-conversation-id") || "",
        error: gone ? "This conversation was deleted or has expired. Retry asks your question in a new chat." : errorText(err) };
      saveFailed(loadFailed().concat([entry]));
      reveal(showFailure(item, entry));
      setStatus("", false);
    }).then(function () {
      window.clearTimeout(slow);
      setBusy(false);
      input.focus();
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;
    var question = input.value.trim();
    if (!question) { setStatus("Type a question first.", true); input.focus(); return; }
    input.value = "";
    ask(question);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  function copyText(text) {
    if (navigator.clipboard && navigator.clipboard.writeText) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {
      var area = el("textarea", { "class": "visually-hidden", readonly: "" });
      area.value = text;
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand("copy");
      document.body.removeChild(area);
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  // The answer as a reader would paste it: its text, then its sources with their links.
  function answerAsText(item) {
    var text = item.querySelector(".answer-text").innerText.trim();
    var sources = item.querySelectorAll(".source-link");
    if (sources.length) {
      text += "\n\nSources:";
      Array.prototype.forEach.call(sources, function (a, i) {
        text += "\n" + (i + 1) + ". " + a.textContent.replace(/\s+/g, " ").trim() + " — " + a.href;
      });
    }
    return text;
  }

  // --- feedback: 👍/👎 under each answer, a comment on 👎; pressing the pressed one takes the vote back ---
  function voteParts(item) {
    return { actions: item.querySelector(".answer-actions"), form: item.querySelector(".vote-comment"),
      opener: item.querySelector(".vote-comment-open"), status: item.querySelector(".vote-status") };
  }

  function showVote(item, vote, comment) {
    var parts = voteParts(item);
    Array.prototype.forEach.call(item.querySelectorAll(".vote-button"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-vote") === vote ? "true" : "false");
    });
    parts.opener.hidden = vote !== "down";
    parts.opener.textContent = comment ? "Edit comment" : "Add a comment";
    if (vote !== "down") parts.form.hidden = true;
  }

  function sendVote(item, vote, comment) {
    var parts = voteParts(item);
    var url = "/api/answers/" + encodeURIComponent(parts.actions.getAttribute("data-answer-id")) + "/vote";
    var body = { vote: vote };
    if (comment !== undefined) body.comment = comment;
    var request = vote ? api("PUT", url, body) : api("DELETE", url);
    return request.then(function (data) {
      showVote(item, data.vote, data.comment);
      parts.status.classList.remove("error");
      parts.status.textContent = !data.vote ? "Vote removed." : comment !== undefined ? "Thanks: your comment was sent." : "Thanks for the feedback.";
      return data;
    }, function (err) {
      parts.status.classList.add("error");
      parts.status.textContent = err.status === 404 ? "This answer can no longer be rated." : errorText(err, "requests");
      throw err;
    });
  }

  function openComment(item) {
    var form = voteParts(item).form;
    form.hidden = false;
    form.querySelector("textarea").focus();
  }

  log.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest(".vote-comment") : null;
    if (!form) return;
    event.preventDefault();
    var item = form.closest(".message");
    sendVote(item, "down", form.querySelector("textarea").value).then(function () {
      form.hidden = true;
      voteParts(item).opener.focus();
    }, function () { /* the status line says what went wrong */ });
  });

  log.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button") : null;
    if (!target) return;
    var item = target.closest(".message");
    if (target.classList.contains("vote-button")) {
      var value = target.getAttribute("data-vote");
      var pressed = target.getAttribute("aria-pressed") === "true";
      sendVote(item, pressed ? null : value).then(function (data) {
        if (data.vote === "down") openComment(item);
      }, function () { /* shown in the status line */ });
      return;
    }
    if (target.classList.contains("vote-comment-open")) { openComment(item); return; }
    if (target.classList.contains("vote-comment-cancel")) {
      voteParts(item).form.hidden = true;
      voteParts(item).opener.focus();
      return;
    }
    if (target.classList.contains("copy-answer")) {
      var label = "Copy answer";
      copyText(answerAsText(item)).then(function () { target.textContent = "Copied"; },
        function () { target.textContent = "Could not copy"; })
        .then(function () { window.setTimeout(function () { target.textContent = label; }, 2000); });
      return;
    }
    var key = item && item.getAttribute("data-failed");
    if (!key) return;
    var question = item.querySelector(".question-text").textContent;
    if (target.classList.contains("retry")) {
      if (busy) return;
      forgetFailed(key);
      log.removeChild(item);
      ask(question); // asked again at the end: where the server will record it
    } else if (target.classList.contains("edit")) {
      var draft = input.value.trim();
      if (draft && draft !== question && !window.confirm("Replace the question you are typing with this one?")) return;
      forgetFailed(key);
      log.removeChild(item);
      input.value = question;
      input.focus();
    } else if (target.classList.contains("remove")) {
      forgetFailed(key);
      log.removeChild(item);
      input.focus();
    }
  });

  var welcome = document.getElementById("welcome");
  if (welcome) welcome.addEventListener("click", function (event) {
    var starter = event.target.closest ? event.target.closest(".starter") : null;
    if (starter) ask(starter.getAttribute("data-question"));
  });

  // --- conversation and history ----------------------------------------------------------------------
  function setTitle(title) {
    heading.textContent = title;
    document.title = title + " · askbase";
  }

  function searchSuffix() { return query ? "?q=" + encodeURIComponent(query) : ""; }

  // Back to a new chat without a reload: the conversation this page showed no longer exists.
  function leaveConversation() {
    form.setAttribute("data-conversation-id", "");
    document.getElementById("export-links").hidden = true;
    if (location.pathname !== "/") history.replaceState(null, "", "/" + searchSuffix());
    document.querySelector(".history-search").setAttribute("action", "/");
    var clear = document.getElementById("clear-search");
    if (clear) clear.setAttribute("href", "/");
    setTitle("New conversation");
    refreshHistory();
  }

  function setConversation(id) {
    var previous = form.getAttribute("data-conversation-id") || "";
    if (previous !== id) {
      // Failed questions of the new chat belong to the conversation it just became.
      saveFailed(loadFailed().map(function (f) { if (f.conversation === previous) f.conversation = id; return f; }));
    }
    form.setAttribute("data-conversation-id", id);
    document.getElementById("export-md").href = "/api/conversations/" + encodeURIComponent(id) + "/export?format=md";
    document.getElementById("export-json").href = "/api/conversations/" + encodeURIComponent(id) + "/export?format=json";
    document.getElementById("export-links").hidden = false;
    var path = "/c/" + encodeURIComponent(id);
    if (location.pathname !== path) history.replaceState(null, "", path + searchSuffix());
    // A search from here stays on this conversation, like the server-rendered page's.
    document.querySelector(".history-search").setAttribute("action", path);
    var clear = document.getElementById("clear-search");
    if (clear) clear.setAttribute("href", path);
  }

  // Text with every occurrence of the search marked, like answer_html.highlight.
  function highlighted(tag, attrs, text) {
    var node = el(tag, attrs);
    var needle = query.split(/\s+/).filter(Boolean).join(" ").toLowerCase();
    var low = text.toLowerCase(), last = 0, at;
    while (needle && (at = low.indexOf(needle, last)) >= 0) {
      node.appendChild(document.createTextNode(text.slice(last, at)));
      node.appendChild(el("mark", { text: text.slice(at, at + needle.length) }));
      last = at + needle.length;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
    return node;
  }

  function historyItem(c, current) {
    var link = highlighted("a", { "class": "history-link", href: "/c/" + encodeURIComponent(c.id) + searchSuffix() }, c.title);
    var item = el("li", { "data-id": c.id }, [link]);
    if (c.snippet) item.appendChild(highlighted("p", { "class": "history-snippet" }, c.snippet));
    item.appendChild(el("time", { datetime: c.updated_at, text: c.updated_at.slice(0, 16).replace("T", " ") }));
    item.appendChild(el("span", { "class": "history-actions" }, [
      el("button", { type: "button", "class": "rename link-button", "data-id": c.id, "aria-label": "Rename conversation: " + c.title, text: "Rename" }),
      el("button", { type: "button", "class": "delete link-button", "data-id": c.id, "aria-label": "Delete conversation: " + c.title, text: "Delete" })]));
    if (c.id === current) { item.className = "current"; link.setAttribute("aria-current", "page"); }
    return item;
  }

  function refreshHistory() {
    var current = form.getAttribute("data-conversation-id");
    return api("GET", "/api/conversations" + searchSuffix()).then(function (data) {
      if (historyList.querySelector(".rename-form")) return; // never throw away a title being typed
      historyList.textContent = "";
      if (!data.items.length) historyList.appendChild(el("li", { "class": "empty", text: query ? "No conversation matches." : "No conversations yet." }));
      if (clearAll) clearAll.hidden = !data.items.length;
      data.items.forEach(function (c) {
        historyList.appendChild(historyItem(c, current));
        if (c.id === current) setTitle(c.title);
      });
    }).catch(function () { /* the sidebar is a convenience; the answer is already shown */ });
  }

  function startRename(item, id) {
    if (item.querySelector(".rename-form")) return;
    var link = item.querySelector(".history-link");
    var field = el("input", { id: "rename-" + id, name: "title", maxlength: "80", required: "", autocomplete: "off" });
    field.value = link.textContent;
    var problem = el("p", { "class": "rename-error error", role: "alert", hidden: "" });
    var renameForm = el("form", { "class": "rename-form" }, [
      el("label", { "for": "rename-" + id, "class": "visually-hidden", text: "New name" }), field,
      el("span", { "class": "rename-buttons" }, [
        el("button", { type: "submit", text: "Save" }),
        el("button", { type: "button", "class": "link-button rename-cancel", text: "Cancel" })]), problem]);
    link.hidden = true;
    item.insertBefore(renameForm, link.nextSibling);
    field.focus();
    field.select();
    function close() { item.removeChild(renameForm); link.hidden = false; link.focus(); }
    renameForm.querySelector(".rename-cancel").addEventListener("click", close);
    field.addEventListener("keydown", function (event) { if (event.key === "Escape") { event.preventDefault(); close(); } });
    renameForm.addEventListener("submit", function (event) {
      event.preventDefault();
      api("PATCH", "/api/conversations/" + encodeURIComponent(id), { title: field.value }).then(function (data) {
        link.textContent = data.title;
        Array.prototype.forEach.call(item.querySelectorAll("button[data-id]"), function (b) {
          b.setAttribute("aria-label", b.textContent + " conversation: " + data.title);
        });
        if (form.getAttribute("data-conversation-id") === id) setTitle(data.title);
        close();
      }).catch(function (err) {
        problem.textContent = err.status === 400 ? "Give it a name of 1 to 80 characters." : errorText(err);
        problem.hidden = false;
      });
    });
  }

  historyList.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.classList) return;
    var id = target.getAttribute("data-id");
    if (target.classList.contains("rename")) { startRename(target.closest("li"), id); return; }
    if (!target.classList.contains("delete")) return;
    if (!window.confirm("Delete this conversation?")) return;
    var position = Array.prototype.indexOf.call(historyList.children, target.closest("li"));
    function deleted() {
      if (form.getAttribute("data-conversation-id") === id) { location.href = "/"; return; }
      setHistoryStatus("Conversation deleted.", false);
      refreshHistory().then(function () {
        // Focus where the entry was (the next one, else the one before), never lost to <body>.
        var links = historyList.querySelectorAll(".history-link");
        var next = links[Math.min(position, links.length - 1)];
        (next || drawer).focus();
      });
    }
    // Already gone (another tab deleted it): what the person wanted is done.
    api("DELETE", "/api/conversations/" + encodeURIComponent(id)).then(deleted, function (err) {
      if (err.status === 404) deleted();
      else setHistoryStatus(errorText(err, "requests"), true);
    });
  });

  // The sidebar's own status line: what a history action did or why it failed, next to the list.
  function setHistoryStatus(text, isError) {
    historyStatus.textContent = text;
    historyStatus.classList.toggle("error", !!isError);
  }

  if (clearAll) clearAll.addEventListener("click", function () {
    if (!window.confirm("Delete all your conversations? This cannot be undone.")) return;
    api("DELETE", "/api/conversations").then(function () { location.href = "/"; })
      .catch(function (err) { setHistoryStatus(errorText(err, "requests"), true); });
  });

  // --- the history drawer (phones) ----------------------------------------------------------------
  var drawer = document.getElementById("history");
  var toggle = document.getElementById("history-toggle");
  var closer = document.getElementById("history-close");
  var backdrop = document.getElementById("drawer-backdrop");
  var chat = form.closest(".chat");
  var narrow = window.matchMedia("(max-width: 48rem)");

  function setDrawer(open) {
    var wasOpen = drawer.classList.contains("open");
    drawer.classList.toggle("open", open);
    backdrop.hidden = !open;
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    document.body.classList.toggle("drawer-open", open);
    chat.inert = open; // keyboard and screen readers stay in the drawer while it covers the chat
    if (open) closer.focus();
    else if (wasOpen) toggle.focus();
  }
  toggle.addEventListener("click", function () { setDrawer(!drawer.classList.contains("open")); });
  closer.addEventListener("click", function () { setDrawer(false); });
  backdrop.addEventListener("click", function () { setDrawer(false); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && drawer.classList.contains("open") && !event.target.closest(".rename-form")) setDrawer(false);
  });
  narrow.addEventListener("change", function () { if (!narrow.matches) setDrawer(false); });

  restoreFailed();
})();
