// cellule — optional enhancements; every page works without this script.
// Moves the focus to the error summary when a form comes back with errors, so that keyboard
// and screen-reader users land on it.
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.getElementById("erreurs");
  if (summary) {
    summary.focus();
  }
});
