// The staff inbox's canned-response picker: the chosen response fills the reply box (staff may edit
// it before sending). The texts come from the page (json_script "canned-texts"), never from a CDN.
document.addEventListener("DOMContentLoaded", function () {
  var picker = document.getElementById("canned-picker");
  var data = document.getElementById("canned-texts");
  if (!picker || !data) { return; }
  var texts = JSON.parse(data.textContent);
  picker.addEventListener("change", function () {
    var box = document.getElementById(picker.dataset.target);
    if (box && texts[picker.value] !== undefined) {
      box.value = texts[picker.value];
      box.focus();
    }
  });
});
