// The sandbox chat page: send, press buttons, reply, and show what the bot sends as it arrives.
(function () {
  "use strict";
  const list = document.getElementById("messages");
  const composer = document.getElementById("composer");
  const text = document.getElementById("text");
  const file = document.getElementById("file");
  const replyTo = document.getElementById("reply_to");
  const replying = document.getElementById("replying");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function scrollDown() { list.scrollTop = list.scrollHeight; window.scrollTo(0, document.body.scrollHeight); }

  function lastId() {
    return Array.from(list.children).reduce(function (most, li) { return Math.max(most, Number(li.dataset.id) || 0); }, 0);
  }

  async function insertHtml(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html.trim();
    Array.from(holder.content.children).forEach(place);
  }

  async function show(id) {
    const response = await fetch("/sandbox/fragment/" + id, { credentials: "same-origin" });
    if (response.ok) { insertHtml(await response.text()); }
  }

  async function catchUp() {
    // Whatever arrived between rendering the page and the event stream opening.
    const response = await fetch("/sandbox/fragments?after=" + lastId(), { credentials: "same-origin" });
    if (response.ok) { insertHtml(await response.text()); }
  }

  function place(fresh) {
    const id = fresh.dataset.id;
    const old = document.getElementById("m" + id);
    if (old) { old.replaceWith(fresh); return scrollDown(); }
    // Ids grow with time: keep the conversation in order even when answers race their questions.
    const later = Array.from(list.children).find(function (li) { return Number(li.dataset.id) > Number(id); });
    list.insertBefore(fresh, later || null);
    scrollDown();
  }

  async function post(url, data) {
    data.append("csrf", csrf);
    const response = await fetch(url, { method: "POST", body: data, credentials: "same-origin" });
    if (!response.ok) {
      // The server explains what went wrong (a file it could not store, a body too large) when it can.
      const answer = await response.clone().json().catch(function () { return {}; });
      alert(answer.error || ("发送失败(" + response.status + ")"));
    }
    return response;
  }

  function say(value) {
    const data = new FormData();
    data.append("text", value);
    return post("/sandbox/send", data);
  }

  composer.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (!text.value.trim() && !(file.files && file.files.length)) return;
    const data = new FormData(composer);
    data.delete("csrf");
    text.value = "";
    await post("/sandbox/send", data);
    file.value = "";
    replyTo.value = "";
    replying.hidden = true;
  });

  document.addEventListener("click", async function (event) {
    const target = event.target;
    if (target.matches("button.kb")) {
      const data = new FormData();
      data.append("data", target.dataset.data);
      data.append("message_id", target.dataset.message);
      target.disabled = true;
      await post("/sandbox/press", data);
    } else if (target.matches("button.reply")) {
      replyTo.value = target.dataset.reply;
      document.getElementById("replying-text").textContent = "#" + target.dataset.reply;
      replying.hidden = false;
      text.focus();
    } else if (target.id === "cancel-reply") {
      replyTo.value = "";
      replying.hidden = true;
    } else if (target.matches("button.chip")) {
      await say(target.dataset.say);
    }
  });

  const events = new EventSource("/sandbox/events");
  events.onopen = catchUp;
  events.onmessage = function (event) { show(JSON.parse(event.data).id); };
  scrollDown();
})();
