/* Interactive tables of the thesis HTML (figure.table.interactive): sort by a column, filter by
   level, search a column, show only the marked rows, count what is shown. Inlined by the
   template, so the file stays self-contained and works offline; WeasyPrint runs no script, so
   the PDF prints the static table. Jinja includes this file as template text: never write a
   brace followed by "{", "%" or "#" here. */
(function () {
  "use strict";

  const MISSING = /^(–|-\/-.*)?$/; // "–", "-/-", "-/- (0)" and empty cells sort last

  /** A cell's text as shown (the same text the template offers as a filter level). */
  function text(cell) {
    return cell.textContent.replace(/\s+/g, " ").trim();
  }

  /** Compare two cell texts, missing ones last whichever the direction. */
  function compare(a, b, numeric, direction) {
    const missingA = MISSING.test(a);
    const missingB = MISSING.test(b);
    if (missingA || missingB) {
      return missingA - missingB;
    }
    const order = numeric
      ? parseFloat(a) - parseFloat(b)
      : a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
    return direction * order;
  }

  /** Reorder the body's rows by one column; ties keep document order. */
  function sortRows(body, rows, column, numeric, direction) {
    const keyed = rows.map((row, index) => ({ row, index, key: text(row.cells[column]) }));
    keyed.sort((a, b) => compare(a.key, b.key, numeric, direction) || a.index - b.index);
    body.append(...keyed.map((entry) => entry.row));
  }

  /** Make the last header row's cells sort the table on click (or Enter / Space). */
  function setUpSorting(table, rows) {
    const headers = Array.from(table.tHead.rows[table.tHead.rows.length - 1].cells);
    headers.forEach((header, column) => {
      header.classList.add("sortable");
      header.tabIndex = 0;
      header.title = "Sort by " + text(header);
      const sort = () => {
        const ascending = header.getAttribute("aria-sort") !== "ascending";
        headers.forEach((other) => other.removeAttribute("aria-sort"));
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const numeric = header.classList.contains("num");
        sortRows(table.tBodies[0], rows, column, numeric, ascending ? 1 : -1);
      };
      header.addEventListener("click", sort);
      header.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sort();
        }
      });
    });
  }

  /** Show the rows that pass every filter, the search and the marked-only box; count them. */
  function setUpFiltering(controls, rows) {
    const selects = Array.from(controls.querySelectorAll("select[data-column]"));
    const search = controls.querySelector("input[type=search]");
    const markedOnly = controls.querySelector(".marked-only input");
    const count = controls.querySelector(".count");
    const matches = (row) => {
      const cell = (control) => text(row.cells[Number(control.dataset.column)]);
      return (
        selects.every((select) => !select.value || cell(select) === select.value) &&
        (!search || cell(search).toLowerCase().includes(search.value.trim().toLowerCase())) &&
        (!markedOnly || !markedOnly.checked || row.classList.contains("marked"))
      );
    };
    const update = () => {
      let shown = 0;
      rows.forEach((row) => {
        row.hidden = !matches(row);
        shown += row.hidden ? 0 : 1;
      });
      count.textContent = `showing ${shown} of ${rows.length} ${count.dataset.unit}`;
    };
    controls.addEventListener("input", update);
    controls.addEventListener("change", update);
    update();
  }

  document.querySelectorAll("figure.table.interactive").forEach((figure) => {
    const table = figure.querySelector("table");
    const rows = Array.from(table.tBodies[0].rows);
    const controls = figure.querySelector(".table-controls");
    setUpSorting(table, rows);
    setUpFiltering(controls, rows);
    controls.hidden = false;
  });
})();
