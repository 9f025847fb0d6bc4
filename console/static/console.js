// The query console: builds OData URLs from $metadata, runs them against the
// service at this site's root, and shows the results.
//
// The token lives in sessionStorage and leaves the browser only in the
// Authorization header of requests to this origin.  Every value from the
// service reaches the page through textContent or form values, never as markup.
"use strict";

(() => {
  const TOKEN_KEY = "odata-klein-console.token";
  const SERVICE_ROOT = location.origin + "/";
  const basicUser = document.body.dataset.basicUser;
  const byId = (id) => document.getElementById(id);

  // --- small DOM helpers -------------------------------------------------------------

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function option(value, label, selected = false) {
    const node = element("option", { value, text: label });
    node.selected = selected;
    return node;
  }

  let uniqueCounter = 0;
  const uniqueId = (prefix) => `${prefix}-${++uniqueCounter}`;

  // --- the token ----------------------------------------------------------------------

  const storedToken = () => sessionStorage.getItem(TOKEN_KEY);

  function authorization(token) {
    const bytes = new TextEncoder().encode(`${basicUser}:${token}`);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return "Basic " + btoa(binary);
  }

  // A URL the console may send the token to: this origin, outside /console.
  function serviceTarget(url) {
    let parsed;
    try {
      parsed = new URL(url, SERVICE_ROOT);
    } catch (error) {
      throw new Error("This is not a URL.");
    }
    if (parsed.origin !== location.origin) {
      throw new Error(`The console sends your token only to this service (${location.origin}/).`);
    }
    if (parsed.pathname === "/console" || parsed.pathname.startsWith("/console/")) {
      throw new Error("That URL is the console itself, not the OData service.");
    }
    return parsed.pathname + parsed.search;
  }

  function serviceFetch(url, headers = {}) {
    return fetch(serviceTarget(url), {
      headers: { Accept: "application/json", Authorization: authorization(storedToken()), ...headers },
      credentials: "omit",
      cache: "no-store",
    });
  }

  // --- the model, read from CSDL JSON --------------------------------------------------

  const model = { sets: new Map(), types: new Map() };

  function readMetadata(csdl) {
    model.sets.clear();
    model.types.clear();
    const [containerNamespace, containerName] = splitQualified(csdl.$EntityContainer);
    for (const [namespace, schema] of Object.entries(csdl)) {
      if (namespace.startsWith("$") || typeof schema !== "object") continue;
      for (const [name, definition] of Object.entries(schema)) {
        if (name.startsWith("$") || name.startsWith("@") || typeof definition !== "object") continue;
        if (definition.$Kind === "EntityType" || definition.$Kind === "ComplexType") {
          model.types.set(`${namespace}.${name}`, structuredType(namespace, name, definition));
        } else if (definition.$Kind === "EnumType") {
          const members = Object.keys(definition).filter((key) => !key.startsWith("$") && !key.startsWith("@"));
          model.types.set(`${namespace}.${name}`, { kind: "EnumType", name: `${namespace}.${name}`, members });
        }
      }
    }
    const container = csdl[containerNamespace][containerName];
    for (const [name, member] of Object.entries(container)) {
      if (name.startsWith("$") || name.startsWith("@") || !member.$Collection) continue;
      model.sets.set(name, { name, type: member.$Type });
    }
  }

  function splitQualified(qualified) {
    const dot = qualified.lastIndexOf(".");
    return [qualified.slice(0, dot), qualified.slice(dot + 1)];
  }

  function structuredType(namespace, name, definition) {
    const properties = [];
    const navigation = [];
    for (const [member, value] of Object.entries(definition)) {
      if (member.startsWith("$") || member.startsWith("@") || typeof value !== "object") continue;
      const entry = {
        name: member,
        type: value.$Type || "Edm.String",
        collection: Boolean(value.$Collection),
        nullable: value.$Nullable === true,
        description: value["@Core.Description"] || "",
      };
      if (value.$Kind === "NavigationProperty") navigation.push(entry);
      else properties.push(entry);
    }
    return {
      kind: definition.$Kind,
      name: `${namespace}.${name}`,
      key: definition.$Key || [],
      open: Boolean(definition.$OpenType),
      description: definition["@Core.Description"] || "",
      properties,
      navigation,
    };
  }

  const typeOfSet = (setName) => model.types.get(model.sets.get(setName).type);
  const isCustomField = (property) =>
    property.name.startsWith("CustomField") || Boolean(model.types.get(property.type)?.open);

  // What a filter row can do with a property of this type.
  const TEMPORAL_OPERATORS = [["eq", "on"], ["ne", "not on"], ["gt", "after"], ["ge", "on or after"], ["lt", "before"], ["le", "on or before"]];
  const KINDS = {
    string: { input: "text", operators: [["eq", "equals"], ["ne", "does not equal"], ["contains", "contains"], ["startswith", "starts with"], ["endswith", "ends with"]] },
    number: { input: "number", operators: [["eq", "="], ["ne", "≠"], ["gt", ">"], ["ge", "≥"], ["lt", "<"], ["le", "≤"]] },
    date: { input: "date", operators: TEMPORAL_OPERATORS },
    datetime: { input: "datetime-local", operators: TEMPORAL_OPERATORS },
    time: { input: "time", operators: TEMPORAL_OPERATORS },
    boolean: { input: "boolean", operators: [["eq", "is"], ["ne", "is not"]] },
    enum: { input: "enum", operators: [["eq", "is"], ["ne", "is not"]] },
  };
  const NULL_OPERATORS = [["null", "is empty"], ["notnull", "is not empty"]];
  const NUMBER_TYPES = new Set(["Edm.Byte", "Edm.SByte", "Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double", "Edm.Single"]);

  function kindOf(property) {
    if (property.collection) return null;
    const type = property.type;
    if (type === "Edm.String") return "string";
    if (NUMBER_TYPES.has(type)) return "number";
    if (type === "Edm.Date") return "date";
    if (type === "Edm.DateTimeOffset") return "datetime";
    if (type === "Edm.TimeOfDay") return "time";
    if (type === "Edm.Boolean") return "boolean";
    if (model.types.get(type)?.kind === "EnumType") return "enum";
    return null;
  }

  const scalarProperties = (type) => type.properties.filter((property) => kindOf(property) !== null);

  // --- building the URL ----------------------------------------------------------------

  // Query values stay readable: only what would break the URL is escaped.
  const encodeValue = (value) =>
    encodeURIComponent(value).replace(/%(24|2C|3A|2F|40|3D|3B)/gi, (match) => decodeURIComponent(match));

  const stringLiteral = (text) => `'${text.replace(/'/g, "''")}'`;

  function localOffset(date) {
    const minutes = -date.getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    const absolute = Math.abs(minutes);
    const pad = (n) => String(n).padStart(2, "0");
    return `${sign}${pad(Math.floor(absolute / 60))}:${pad(absolute % 60)}`;
  }

  function literal(kind, property, value) {
    switch (kind) {
      case "string": return stringLiteral(value);
      case "number": return value;
      case "date": return value;
      case "datetime": {
        const withSeconds = value.length === 16 ? `${value}:00` : value;
        return withSeconds + localOffset(new Date(value));
      }
      case "time": return value.length === 5 ? `${value}:00` : value;
      case "boolean": return value;
      case "enum": return `${property.type}'${value}'`;
      default: return null;
    }
  }

  function filterClause(row) {
    const property = row.property;
    if (!property) return null;
    const operator = row.operator.value;
    if (operator === "null") return `${property.name} eq null`;
    if (operator === "notnull") return `${property.name} ne null`;
    const value = row.value.value;
    if (value === "") return null;
    const text = literal(row.kind, property, value);
    if (["contains", "startswith", "endswith"].includes(operator)) return `${operator}(${property.name},${text})`;
    return `${property.name} ${operator} ${text}`;
  }

  const checkedValues = (container) =>
    [...container.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);

  function builtUrl() {
    const setName = byId("entity-set").value;
    if (!setName) return "";
    const options = [];
    const select = checkedValues(byId("column-list"));
    if (select.length) options.push(["$select", select.join(",")]);
    const clauses = filterRows.map(filterClause).filter(Boolean);
    if (clauses.length) options.push(["$filter", clauses.join(` ${byId("filter-join").value} `)]);
    const expand = expandItems();
    if (expand.length) options.push(["$expand", expand.join(",")]);
    const orderby = sortRows.filter((row) => row.property.value).map((row) =>
      row.direction.value === "desc" ? `${row.property.value} desc` : row.property.value);
    if (orderby.length) options.push(["$orderby", orderby.join(",")]);
    for (const name of ["top", "skip"]) {
      const value = byId(name).value;
      if (value !== "") options.push([`$${name}`, value]);
    }
    if (byId("count").checked) options.push(["$count", "true"]);
    const search = byId("search").value.trim();
    if (search) options.push(["$search", search]);
    const query = options.map(([name, value]) => `${name}=${encodeValue(value)}`).join("&");
    return SERVICE_ROOT + setName + (query ? `?${query}` : "");
  }

  function expandItems() {
    return [...byId("expand-list").querySelectorAll(".expansion")].flatMap((block) => {
      const toggle = block.querySelector("input.expand-toggle");
      if (!toggle.checked) return [];
      const columns = checkedValues(block.querySelector(".checks"));
      return [columns.length ? `${toggle.value}($select=${columns.join(",")})` : toggle.value];
    });
  }

  function showUrl(url) {
    byId("url").value = url;
    byId("url-note").textContent = "";
    announceUrl(url);
  }

  function announceUrl(url) {
    byId("connect-url").value = url;
    document.body.dispatchEvent(new CustomEvent("console-url"));
  }

  const refreshUrl = () => showUrl(builtUrl());

  // --- the builder's parts -------------------------------------------------------------

  let filterRows = [];
  let sortRows = [];

  function checkbox(name, value, label, checked = false, extraClass = "") {
    const id = uniqueId(name);
    const box = element("input", { type: "checkbox", id, value, class: extraClass || null });
    box.checked = checked;
    return element("label", { class: "check", for: id }, box, ` ${label}`);
  }

  function resetBuilder(setName) {
    const type = typeOfSet(setName);
    const columns = byId("column-list");
    columns.replaceChildren(...type.properties.map((property) => checkbox("column", property.name, property.name)));
    filterRows = [];
    byId("filter-list").replaceChildren();
    sortRows = [];
    byId("sort-list").replaceChildren();
    const expansions = byId("expand-list");
    expansions.replaceChildren(...type.navigation.filter((nav) => model.types.has(nav.type)).map((nav) => {
      const target = model.types.get(nav.type);
      const toggle = checkbox("expand", nav.name, `${nav.name}${nav.collection ? " (many)" : ""}`, false, "expand-toggle");
      const columns = element("div", { class: "checks nested", hidden: true },
        ...target.properties.filter((p) => !p.collection).map((p) => checkbox(`expand-${nav.name}`, p.name, p.name)));
      return element("div", { class: "expansion" }, toggle, columns);
    }));
    if (!type.navigation.length) expansions.append(element("p", { class: "hint", text: "This entity set has no related entities." }));
    for (const id of ["top", "skip", "search"]) byId(id).value = "";
    byId("count").checked = false;
  }

  function removable(list, rows, row, node) {
    const remove = element("button", { type: "button", class: "remove", "aria-label": "Remove", text: "✕" });
    remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(row), 1);
      node.remove();
      refreshUrl();
    });
    node.append(remove);
    list.append(node);
  }

  function addFilterRow(initial = {}) {
    const type = typeOfSet(byId("entity-set").value);
    const properties = scalarProperties(type);
    if (!properties.length) return null;
    const row = { property: null, kind: null };
    const propertyId = uniqueId("filter-property");
    const operatorId = uniqueId("filter-operator");
    const valueId = uniqueId("filter-value");
    const propertySelect = element("select", { id: propertyId, class: "filter-property" },
      ...properties.map((p) => option(p.name, p.name, p.name === initial.property)));
    row.operator = element("select", { id: operatorId, class: "filter-operator" });
    const valueSlot = element("span", { class: "value-slot" });
    const node = element("li", { class: "filter-row" },
      element("label", { class: "sr-only", for: propertyId, text: "Property" }), propertySelect,
      element("label", { class: "sr-only", for: operatorId, text: "Operator" }), row.operator,
      element("label", { class: "sr-only", for: valueId, text: "Value" }), valueSlot);

    const fitProperty = (operator, value) => {
      row.property = properties.find((p) => p.name === propertySelect.value);
      row.kind = kindOf(row.property);
      const operators = [...KINDS[row.kind].operators, ...(row.property.nullable ? NULL_OPERATORS : [])];
      row.operator.replaceChildren(...operators.map(([op, label]) => option(op, label, op === operator)));
      row.value = valueInput(row.kind, row.property, valueId);
      if (value !== undefined) row.value.value = value;
      valueSlot.replaceChildren(row.value);
      fitOperator();
    };
    const fitOperator = () => {
      row.value.hidden = ["null", "notnull"].includes(row.operator.value);
    };
    propertySelect.addEventListener("change", () => { fitProperty(); refreshUrl(); });
    row.operator.addEventListener("change", () => { fitOperator(); refreshUrl(); });
    valueSlot.addEventListener("input", refreshUrl);
    valueSlot.addEventListener("change", refreshUrl);
    fitProperty(initial.operator, initial.value);
    filterRows.push(row);
    removable(byId("filter-list"), filterRows, row, node);
    return row;
  }

  function valueInput(kind, property, id) {
    if (kind === "boolean") {
      return element("select", { id, class: "filter-value" }, option("true", "true"), option("false", "false"));
    }
    if (kind === "enum") {
      const members = model.types.get(property.type).members;
      return element("select", { id, class: "filter-value" }, ...members.map((m) => option(m, m)));
    }
    const attributes = { id, class: "filter-value", type: KINDS[kind].input };
    if (kind === "number") attributes.step = "any";
    if (kind === "time") attributes.step = "1";
    return element("input", attributes);
  }

  function addSortRow(initial = {}) {
    const type = typeOfSet(byId("entity-set").value);
    const propertyId = uniqueId("sort-property");
    const directionId = uniqueId("sort-direction");
    const row = {
      property: element("select", { id: propertyId, class: "sort-property" },
        ...scalarProperties(type).map((p) => option(p.name, p.name, p.name === initial.property))),
      direction: element("select", { id: directionId, class: "sort-direction" },
        option("asc", "ascending"), option("desc", "descending", initial.direction === "desc")),
    };
    const node = element("li", { class: "sort-row" },
      element("label", { class: "sr-only", for: propertyId, text: "Sort by" }), row.property,
      element("label", { class: "sr-only", for: directionId, text: "Direction" }), row.direction);
    node.addEventListener("change", refreshUrl);
    sortRows.push(row);
    removable(byId("sort-list"), sortRows, row, node);
    return row;
  }

  // --- a hand-edited URL, read back into the builder where it can be -------------------

  function splitTopLevel(text, separator) {
    const parts = [];
    let depth = 0, quoted = false, start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "'") quoted = !quoted;
      else if (!quoted && c === "(") depth++;
      else if (!quoted && c === ")") depth--;
      else if (!quoted && depth === 0 && text.startsWith(separator, i)) {
        parts.push(text.slice(start, i));
        start = i + separator.length;
        i += separator.length - 1;
      }
    }
    parts.push(text.slice(start));
    return parts;
  }

  function parseLiteral(text, kind) {
    if (kind === "string") {
      const match = /^'((?:[^']|'')*)'$/.exec(text);
      return match ? match[1].replace(/''/g, "'") : null;
    }
    if (kind === "number") return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) ? text : null;
    if (kind === "date") return /^\d{4}-\d{2}-\d{2}$/.test(text) ? text : null;
    if (kind === "time") return /^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text) ? text : null;
    if (kind === "boolean") return /^(true|false)$/.test(text) ? text : null;
    if (kind === "datetime") {
      const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2})?(Z|[+-]\d{2}:\d{2})$/.exec(text);
      if (!match) return null;
      const instant = new Date(text);
      const local = new Date(instant.getTime() - instant.getTimezoneOffset() * 60000);
      return local.toISOString().slice(0, 16);
    }
    if (kind === "enum") {
      const match = /^[\w.]+'(\w+)'$/.exec(text);
      return match ? match[1] : null;
    }
    return null;
  }

  function parseClause(clause, type) {
    const byName = (name) => scalarProperties(type).find((p) => p.name === name);
    let match = /^(contains|startswith|endswith)\((\w+),(.*)\)$/.exec(clause);
    if (match) {
      const property = byName(match[2]);
      const value = property && kindOf(property) === "string" ? parseLiteral(match[3], "string") : null;
      return value === null ? null : { property: match[2], operator: match[1], value };
    }
    match = /^(\w+) (eq|ne|gt|ge|lt|le) (.+)$/.exec(clause);
    if (!match) return null;
    const property = byName(match[1]);
    if (!property) return null;
    if (match[3] === "null" && property.nullable && ["eq", "ne"].includes(match[2])) {
      return { property: property.name, operator: match[2] === "eq" ? "null" : "notnull" };
    }
    const kind = kindOf(property);
    const allowed = KINDS[kind].operators.map(([op]) => op);
    const value = parseLiteral(match[3], kind);
    return value === null || !allowed.includes(match[2]) ? null : { property: property.name, operator: match[2], value };
  }

  function parseFilter(text, type) {
    for (const join of ["and", "or"]) {
      const clauses = splitTopLevel(text, ` ${join} `).map((c) => c.trim());
      const other = join === "and" ? "or" : "and";
      if (clauses.some((c) => splitTopLevel(c, ` ${other} `).length > 1)) continue;
      const parsed = clauses.map((c) => parseClause(c, type));
      if (parsed.every(Boolean)) return { join, clauses: parsed };
    }
    return null;
  }

  function decodeComponent(text) {
    try {
      return decodeURIComponent(text);
    } catch (error) {
      return null;
    }
  }

  function queryPairs(query) {
    return query.split("&").filter(Boolean).map((pair) => {
      const equals = pair.indexOf("=");
      const rawName = equals < 0 ? pair : pair.slice(0, equals);
      const rawValue = equals < 0 ? "" : pair.slice(equals + 1);
      return { rawName, rawValue, name: (decodeComponent(rawName) || rawName).toLowerCase().replace(/^\$/, ""), value: decodeComponent(rawValue) };
    });
  }

  // Returns the parts of the URL the builder could not show.
  function readUrlIntoBuilder(url) {
    let parsed;
    try {
      parsed = new URL(url, SERVICE_ROOT);
    } catch (error) {
      return ["the URL"];
    }
    const setName = decodeComponent(parsed.pathname.slice(1));
    if (!model.sets.has(setName)) return ["the resource path"];
    const set = byId("entity-set");
    set.value = setName;
    resetBuilder(setName);
    const type = typeOfSet(setName);
    const missed = [];
    for (const { name, rawName, value } of queryPairs(parsed.search.slice(1))) {
      const shown = value !== null && showOption(name, value, type);
      if (!shown) missed.push(decodeComponent(rawName) || rawName);
    }
    return missed;
  }

  function showOption(name, value, type) {
    switch (name) {
      case "select": {
        const names = value.split(",").map((n) => n.trim());
        const boxes = [...byId("column-list").querySelectorAll("input")];
        if (!names.every((n) => boxes.some((box) => box.value === n))) return false;
        for (const box of boxes) box.checked = names.includes(box.value);
        return true;
      }
      case "filter": {
        const filter = parseFilter(value, type);
        if (!filter) return false;
        byId("filter-join").value = filter.join;
        for (const clause of filter.clauses) addFilterRow(clause);
        return true;
      }
      case "orderby": {
        const keys = value.split(",").map((k) => /^\s*(\w+)(?:\s+(asc|desc))?\s*$/.exec(k));
        if (!keys.every((k) => k && scalarProperties(type).some((p) => p.name === k[1]))) return false;
        for (const k of keys) addSortRow({ property: k[1], direction: k[2] });
        return true;
      }
      case "expand": return showExpand(value);
      case "top": case "skip":
        if (!/^\d+$/.test(value)) return false;
        byId(name).value = value;
        return true;
      case "count":
        if (!/^(true|false)$/.test(value)) return false;
        byId("count").checked = value === "true";
        return true;
      case "search":
        byId("search").value = value;
        return true;
      default:
        return false;
    }
  }

  function showExpand(value) {
    const items = splitTopLevel(value, ",").map((item) => /^\s*(\w+)(?:\(\$select=([\w,]+)\))?\s*$/.exec(item));
    const blocks = [...byId("expand-list").querySelectorAll(".expansion")];
    const blockOf = (name) => blocks.find((b) => b.querySelector("input.expand-toggle").value === name);
    if (!items.every((item) => item && blockOf(item[1]))) return false;
    for (const item of items) {
      const block = blockOf(item[1]);
      block.querySelector("input.expand-toggle").checked = true;
      const columns = block.querySelector(".checks");
      columns.hidden = false;
      const names = item[2] ? item[2].split(",") : [];
      for (const box of columns.querySelectorAll("input")) box.checked = names.includes(box.value);
    }
    return true;
  }

  // --- running a query -----------------------------------------------------------------

  // The rows shown, the link to more, and the service's account of every response they came in.
  const run = { rows: [], nextLink: null, started: 0, explanations: [] };

  // The service's account of how it answered a collection request: asked for on
  // every run, shown in the Explain tab, never as a row.
  const EXPLAIN_ANNOTATION = "@OdataKlein.explain";
  const EXPLAIN_PREFERENCE = 'odata.include-annotations="OdataKlein.explain"';

  async function execute(url, append) {
    hideError();
    const status = byId("status");
    status.textContent = "Running…";
    byId("run").disabled = true;
    byId("next-page").disabled = true;
    const pageSize = byId("page-size").value;
    const started = performance.now();
    let response, body, text;
    try {
      const preferences = [EXPLAIN_PREFERENCE, ...(pageSize ? [`odata.maxpagesize=${pageSize}`] : [])];
      response = await serviceFetch(url, { Prefer: preferences.join(", ") });
      text = await response.text();
    } catch (error) {
      status.textContent = "";
      showError(error.message || String(error), null);
      return;
    } finally {
      byId("run").disabled = false;
      byId("next-page").disabled = false;
    }
    const elapsed = Math.round(performance.now() - started);
    try {
      body = JSON.parse(text);
    } catch (error) {
      body = null;
    }
    showHeaders(response);
    byId("raw").textContent = body === null ? text : JSON.stringify(body, null, 2);
    const explanation = response.ok ? body?.[EXPLAIN_ANNOTATION] : undefined;
    if (explanation && typeof explanation === "object") {
      // "Load next page" adds its response's account to those of the rows already shown.
      run.explanations = append ? run.explanations.concat([explanation]) : [explanation];
      renderExplanation(mergedExplanation(run.explanations));
    } else {
      renderExplanation(undefined);
    }
    if (!response.ok) {
      status.textContent = `${response.status} ${response.statusText} · ${elapsed} ms`;
      if (!append) {
        run.rows = [];
        run.nextLink = null;
        byId("results").replaceChildren();
        byId("next-page").hidden = true;
      }
      if (response.status === 401) forgetToken("The service did not accept the token.");
      showError(body?.error?.message || text || response.statusText, body?.error?.target ?? null, url, body?.error?.code);
      return;
    }
    const rows = Array.isArray(body?.value) ? body.value : body && typeof body === "object" ? [body] : [];
    run.rows = append ? run.rows.concat(rows) : rows;
    run.nextLink = body?.["@odata.nextLink"] || null;
    renderTable(run.rows);
    const count = body?.["@odata.count"];
    status.replaceChildren(
      element("span", { id: "row-count", text: `${run.rows.length} rows` }), " · ",
      ...(count !== undefined && !append ? [element("span", { id: "total-count", text: `${count} matching in all` }), " · "] : []),
      element("span", { id: "elapsed", text: `${elapsed} ms` }),
    );
    byId("next-page").hidden = !run.nextLink;
  }

  function showHeaders(response) {
    const rows = [...response.headers.entries()].map(([name, value]) =>
      element("tr", {}, element("th", { scope: "row", text: name }), element("td", { text: value })));
    byId("headers").replaceChildren(
      element("caption", { text: `HTTP ${response.status} ${response.statusText}` }), ...rows);
  }

  // One account of several responses: what ClickTime applied and what the
  // service evaluated (the same for every page), every request, every row.
  function mergedExplanation(explanations) {
    const union = (key) => [...new Set(explanations.flatMap((explanation) => explanation[key] || []))];
    return {
      pushedDown: union("pushedDown"),
      evaluatedByService: union("evaluatedByService"),
      upstreamRequests: explanations.flatMap((explanation) => explanation.upstreamRequests || []),
      rowsWritten: explanations.reduce((sum, explanation) => sum + (explanation.rowsWritten ?? 0), 0),
      responses: explanations.length,
    };
  }

  function renderExplanation(explanation) {
    const panel = byId("explain");
    if (!explanation || typeof explanation !== "object") {
      panel.replaceChildren(element("p", { class: "hint", text: "Explain is available for collection queries." }));
      return;
    }
    const list = (items, otherwise) => items?.length
      ? element("ul", {}, ...items.map((item) => element("li", { text: String(item) })))
      : element("p", { class: "hint", text: otherwise });
    const calls = explanation.upstreamRequests || [];
    const headings = ["Method", "URL path", "Parameters", "Status", "Rows", "Total", "Seconds", "Attempts"];
    const requests = element("table", { id: "explain-requests" },
      element("thead", {}, element("tr", {}, ...headings.map((h) => element("th", { scope: "col", text: h })))),
      element("tbody", {}, ...calls.map((call) => element("tr", {},
        ...[call.method, upstreamPath(call.url), (call.params || []).map(([name, value]) => `${name}=${value}`).join("\n"),
          call.status, call.rows, call.total, call.seconds, call.attempts]
          .map((value) => element("td", { text: value === null || value === undefined ? "" : String(value) }))))));
    if (!calls.length) requests.append(element("caption", { text: "No requests to ClickTime." }));
    panel.replaceChildren(
      element("h3", { text: "Applied by ClickTime" }),
      list(explanation.pushedDown, "nothing — the service read the whole set"),
      element("h3", { text: "Evaluated by the service" }),
      list(explanation.evaluatedByService, "nothing"),
      element("h3", { text: "Requests to ClickTime" }),
      element("div", { class: "table-wrap" }, requests),
      element("p", { class: "hint", text: `${explanation.rowsWritten} rows written in ${
        explanation.responses === 1 ? "this response" : `${explanation.responses} responses`}.` }),
    );
  }

  function upstreamPath(url) {
    try {
      return new URL(url).pathname;
    } catch (error) {
      return String(url ?? "");
    }
  }

  // Rows as a table: nested objects (expanded entities, complex values) become
  // "Outer/Inner" columns; collections become a readable list in one cell.
  function flatten(row, prefix = "", into = new Map()) {
    for (const [key, value] of Object.entries(row)) {
      if (key.includes("@")) continue;
      const column = prefix + key;
      if (value !== null && typeof value === "object" && !Array.isArray(value)) flatten(value, `${column}/`, into);
      else into.set(column, value);
    }
    return into;
  }

  function cellContent(value) {
    if (value === null || value === undefined) return element("span", { class: "null", text: "" });
    if (Array.isArray(value)) {
      if (!value.length) return document.createTextNode("(none)");
      const flat = value.map((item) => (item !== null && typeof item === "object" ? flatten(item) : new Map([["", item]])));
      const columns = [...new Set(flat.flatMap((map) => [...map.keys()]))];
      const table = element("table", { class: "nested" },
        element("tr", {}, ...columns.map((c) => element("th", { text: c }))),
        ...flat.map((map) => element("tr", {}, ...columns.map((c) => element("td", {}, cellContent(map.get(c)))))));
      return element("details", {}, element("summary", { text: `${value.length} item${value.length === 1 ? "" : "s"}` }), table);
    }
    return document.createTextNode(String(value));
  }

  function renderTable(rows) {
    const flat = rows.map((row) => flatten(row));
    const columns = [...new Set(flat.flatMap((map) => [...map.keys()]))];
    const table = byId("results");
    const head = element("thead", {}, element("tr", {}, ...columns.map((c) => element("th", { scope: "col", text: c }))));
    const bodyRows = document.createDocumentFragment();
    for (const map of flat) {
      bodyRows.append(element("tr", {}, ...columns.map((c) => element("td", {}, cellContent(map.get(c))))));
    }
    table.replaceChildren(head, element("tbody", {}, bodyRows));
    if (!rows.length) table.append(element("caption", { text: "No rows match." }));
  }

  // --- errors, with the position of a syntax error marked -------------------------------

  function hideError() {
    byId("error").hidden = true;
    byId("error-where").hidden = true;
  }

  function showError(message, target, url, code) {
    byId("error-message").textContent = code ? `${code}: ${message}` : message;
    byId("error").hidden = false;
    const position = /at position (\d+)/.exec(message);
    if (!position || !url) return;
    const located = locate(url, target, Number(position[1]));
    if (!located) return;
    const marked = byId("error-marked");
    const at = located.text.slice(located.position, located.position + 1);
    marked.replaceChildren(
      located.label,
      located.text.slice(0, located.position),
      element("mark", { id: "error-mark", text: at || " ", class: at ? null : "at-end" }),
      located.text.slice(located.position + 1),
    );
    byId("error-where").hidden = false;
    const textarea = byId("url");
    if (textarea.value === url) textarea.setSelectionRange(located.urlStart, located.urlEnd);
  }

  // Where an error position falls: in the decoded value of the option it names,
  // or in the resource path; and the same place in the URL as written.
  function locate(url, target, position) {
    const query = url.indexOf("?");
    const queryText = query < 0 ? "" : url.slice(query + 1);
    if (!target) {
      const pathStart = url.startsWith(SERVICE_ROOT) ? SERVICE_ROOT.length : url.indexOf("/", url.indexOf("//") + 2) + 1;
      const path = url.slice(pathStart, query < 0 ? url.length : query);
      return { label: "", text: path, position, urlStart: pathStart + position, urlEnd: pathStart + position + 1 };
    }
    const wanted = target.toLowerCase().replace(/^\$/, "");
    let offset = query + 1;
    for (const pair of queryText.split("&")) {
      const parsed = queryPairs(pair)[0];
      if (parsed && parsed.name === wanted && parsed.value !== null) {
        const valueStart = offset + parsed.rawName.length + 1;
        let written = 0;
        while (written < parsed.rawValue.length && (decodeComponent(parsed.rawValue.slice(0, written)) ?? "").length < position) {
          written += parsed.rawValue[written] === "%" ? 3 : 1;
        }
        return {
          label: `${decodeComponent(parsed.rawName)}=`,
          text: parsed.value,
          position,
          urlStart: valueStart + written,
          urlEnd: valueStart + Math.min(written + 1, parsed.rawValue.length),
        };
      }
      offset += pair.length + 1;
    }
    return null;
  }

  // --- the metadata browser --------------------------------------------------------------

  function renderMetadata() {
    const blocks = [...model.sets.values()].map((set) => {
      const type = model.types.get(set.type);
      const rows = [
        ...type.properties.map((p) => propertyRow(p, type, isCustomField(p) ? "custom field" : "")),
        ...type.navigation.map((n) => propertyRow(n, type, `navigation to ${n.type}${n.collection ? " (many)" : ""}`)),
      ];
      const table = element("table", { class: "metadata" },
        element("thead", {}, element("tr", {}, ...["Property", "Type", "Notes"].map((h) => element("th", { scope: "col", text: h })))),
        element("tbody", {}, ...rows));
      const summary = element("summary", {}, element("strong", { text: set.name }), ` (${type.name}) `,
        element("span", { class: "hint", text: type.description }));
      return element("details", { class: "entity-set", "data-search": `${set.name} ${type.name} ${type.description}`.toLowerCase() }, summary, table);
    });
    byId("metadata-list").replaceChildren(...blocks);
  }

  function propertyRow(property, type, note) {
    const notes = [type.key.includes(property.name) ? "key" : "", note, property.description].filter(Boolean).join(" · ");
    const typeText = property.collection ? `Collection(${property.type})` : property.type;
    return element("tr", { "data-search": `${property.name} ${typeText} ${notes}`.toLowerCase() },
      element("th", { scope: "row", text: property.name }), element("td", { text: typeText }), element("td", { text: notes }));
  }

  function filterMetadata() {
    const term = byId("metadata-search").value.trim().toLowerCase();
    for (const block of byId("metadata-list").querySelectorAll("details.entity-set")) {
      let any = !term || block.dataset.search.includes(term);
      for (const row of block.querySelectorAll("tbody tr")) {
        const hit = !term || row.dataset.search.includes(term) || block.dataset.search.includes(term);
        row.hidden = !hit;
        any = any || hit;
      }
      block.hidden = !any;
      block.open = Boolean(term) && any;
    }
  }

  // --- tabs --------------------------------------------------------------------------------

  function selectTab(tab) {
    for (const other of document.querySelectorAll("[role=tab]")) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      byId(other.getAttribute("aria-controls")).hidden = !selected;
    }
  }

  function tabKeys(event) {
    const tabs = [...document.querySelectorAll("[role=tab]")];
    const index = tabs.indexOf(event.target);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (index < 0 || !step) return;
    const next = tabs[(index + step + tabs.length) % tabs.length];
    selectTab(next);
    next.focus();
  }

  // --- signing in and out --------------------------------------------------------------

  function forgetToken(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    byId("console").hidden = true;
    byId("signed-in").hidden = true;
    byId("sign-in").hidden = false;
    const note = byId("sign-in-error");
    note.textContent = reason || "";
    note.hidden = !reason;
  }

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    byId("token").value = "";
    let response;
    try {
      response = await serviceFetch("$metadata");
    } catch (error) {
      forgetToken(`The service did not answer: ${error.message}`);
      return;
    }
    if (!response.ok) {
      forgetToken(response.status === 401 ? "The service did not accept the token." : `The service answered ${response.status}.`);
      return;
    }
    readMetadata(await response.json());
    byId("sign-in-error").hidden = true;
    byId("sign-in").hidden = true;
    byId("signed-in").hidden = false;
    byId("console").hidden = false;
    const set = byId("entity-set");
    set.replaceChildren(...[...model.sets.keys()].map((name) => option(name, name)));
    renderMetadata();
    resetBuilder(set.value);
    refreshUrl();
  }

  // --- wiring ------------------------------------------------------------------------------

  function wire() {
    byId("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = byId("token").value.trim();
      if (token) signIn(token);
    });
    document.addEventListener("click", (event) => {
      const demo = event.target.closest(".demo-token");
      if (demo) signIn(demo.dataset.token);
      const copy = event.target.closest("button.copy");
      if (copy) copyText(byId(copy.dataset.copy));
    });
    byId("sign-out").addEventListener("click", () => forgetToken(""));
    byId("entity-set").addEventListener("change", (event) => { resetBuilder(event.target.value); refreshUrl(); });
    const builder = byId("builder");
    builder.addEventListener("submit", (event) => event.preventDefault());
    byId("column-list").addEventListener("change", refreshUrl);
    byId("filter-join").addEventListener("change", refreshUrl);
    byId("expand-list").addEventListener("change", (event) => {
      if (event.target.classList.contains("expand-toggle")) {
        event.target.closest(".expansion").querySelector(".checks").hidden = !event.target.checked;
      }
      refreshUrl();
    });
    for (const id of ["top", "skip", "search", "count"]) byId(id).addEventListener("input", refreshUrl);
    byId("columns-all").addEventListener("click", () => setAllColumns(true));
    byId("columns-none").addEventListener("click", () => setAllColumns(false));
    byId("add-filter").addEventListener("click", () => { addFilterRow(); refreshUrl(); });
    byId("add-sort").addEventListener("click", () => { addSortRow(); refreshUrl(); });
    let editTimer = null;
    byId("url").addEventListener("input", () => {
      clearTimeout(editTimer);
      editTimer = setTimeout(() => {
        const url = byId("url").value.trim();
        const missed = readUrlIntoBuilder(url);
        byId("url-note").textContent = missed.length
          ? `The builder cannot show ${missed.join(", ")}; the URL runs as written.` : "";
        announceUrl(url);
      }, 250);
    });
    byId("run").addEventListener("click", () => execute(byId("url").value.trim(), false));
    byId("url").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) execute(byId("url").value.trim(), false);
    });
    byId("next-page").addEventListener("click", () => run.nextLink && execute(run.nextLink, true));
    for (const tab of document.querySelectorAll("[role=tab]")) {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", tabKeys);
    }
    byId("metadata-search").addEventListener("input", filterMetadata);
    const token = storedToken();
    if (token) signIn(token);
  }

  // The clipboard API exists only in secure contexts (https, localhost); elsewhere
  // the text is selected for the user to copy.
  function copyText(node) {
    const selectIt = () => window.getSelection().selectAllChildren(node);
    if (navigator.clipboard) navigator.clipboard.writeText(node.textContent).catch(selectIt);
    else selectIt();
  }

  function setAllColumns(checked) {
    for (const box of byId("column-list").querySelectorAll("input")) box.checked = checked;
    refreshUrl();
  }

  wire();
})();
