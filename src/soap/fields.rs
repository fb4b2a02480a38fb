//! XML forms of the protocol's composite types (SPEC section 3), both directions.
//!
//! Readers accept fields in any order, skip unknown ones and treat `xsi:nil` as absent. Strings
//! the protocol always sends default to empty when missing; numbers, dates and the parts that
//! carry meaning are required. Writers emit every field in the specified order, leaving out
//! only absent optional ones.

use std::borrow::Cow;

use super::lexical;
use super::params::{read_params, write_params};
use super::reader::{need, put, Elem, Reader, Res, XsiType};
use super::types::{
    AppInfo, AppState, CmdData, Command, DevInfo, EventBody, EventInfo, FileChunk, FileInfo,
    LicKeyInfo, LicenseInfo, LocData, ParamError, ProdInfo, Subscriptions, SyncInfo,
};
use super::writer::Writer;
use super::CodecError;

/// Reads a struct-valued child: `None` for `xsi:nil`.
pub(crate) fn nested<'a, T>(
    r: &mut Reader<'a>,
    elem: &Elem<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Res<T>,
) -> Res<Option<T>> {
    if elem.nil {
        r.skip(elem)?;
        return Ok(None);
    }
    read(r).map(Some)
}

// ---------------------------------------------------------------------------------------------
// param-error

pub(crate) fn read_param_error(r: &mut Reader<'_>) -> Res<ParamError> {
    let (mut code, mut module, mut file, mut line, mut message, mut locdata) =
        (None, None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "code" => put(&mut code, r.int(&c, "code")?, "code")?,
            "module" => put(&mut module, r.string(&c, "module")?, "module")?,
            "file" => put(&mut file, r.string(&c, "file")?, "file")?,
            "line" => put(&mut line, r.int(&c, "line")?, "line")?,
            "message" => put(&mut message, r.string(&c, "message")?, "message")?,
            "locdata" => {
                let v = nested(r, &c, read_locdata)?;
                put(&mut locdata, v, "locdata")?;
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(ParamError {
        code: need(code, "code")?,
        module: module.unwrap_or_default(),
        file: file.unwrap_or_default(),
        line: line.unwrap_or_default(),
        message: message.unwrap_or_default(),
        locdata,
    })
}

fn read_locdata(r: &mut Reader<'_>) -> Res<LocData> {
    let (mut format_id, mut format, mut locmodule, mut args) = (None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "format-id" => put(&mut format_id, r.int(&c, "format-id")?, "format-id")?,
            "format" => put(&mut format, r.string(&c, "format")?, "format")?,
            "locmodule" => put(&mut locmodule, r.string(&c, "locmodule")?, "locmodule")?,
            "args" => {
                let v = nested(r, &c, read_string_list)?;
                put(&mut args, v, "args")?;
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(LocData {
        format_id: format_id.unwrap_or_default(),
        format: format.unwrap_or_default(),
        locmodule: locmodule.unwrap_or_default(),
        args: args.unwrap_or_default(),
    })
}

pub(crate) fn write_param_error(w: &mut Writer, name: &str, e: &ParamError) {
    w.open(name);
    w.number("code", e.code);
    w.string("module", &e.module);
    w.string("file", &e.file);
    w.number("line", e.line);
    w.string("message", &e.message);
    if let Some(l) = &e.locdata {
        w.open("locdata");
        w.number("format-id", l.format_id);
        w.string("format", &l.format);
        w.string("locmodule", &l.locmodule);
        write_string_list(w, "args", &l.args);
        w.close("locdata");
    }
    w.close(name);
}

/// A list of `item` strings (`string-array`, `typesInfo`, locdata `args`).
fn read_string_list(r: &mut Reader<'_>) -> Res<Vec<String>> {
    let mut items = Vec::new();
    while let Some(c) = r.next_child()? {
        if c.local() == "item" {
            r.count_entry()?;
            if let Some(s) = r.string(&c, "item")? {
                items.push(s);
            }
        } else {
            r.skip(&c)?;
        }
    }
    Ok(items)
}

fn write_items(w: &mut Writer, items: &[String]) {
    for item in items {
        w.string("item", item);
    }
}

fn write_string_list(w: &mut Writer, name: &str, items: &[String]) {
    w.open(name);
    write_items(w, items);
    w.close(name);
}

// ---------------------------------------------------------------------------------------------
// command

pub(crate) fn read_command(r: &mut Reader<'_>) -> Res<Command> {
    let mut code = None;
    let mut data = None;
    let mut seen_data = false;
    while let Some(c) = r.next_child()? {
        match c.local() {
            "code" => put(&mut code, r.int(&c, "code")?, "code")?,
            "data" => {
                if seen_data {
                    r.skip(&c)?;
                    return Err(CodecError::DuplicateField {
                        field: "data".into(),
                    }
                    .into());
                }
                seen_data = true;
                data = read_cmd_data(r, &c)?;
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(Command {
        code: need(code, "code")?,
        data,
    })
}

fn read_cmd_data<'a>(r: &mut Reader<'a>, data: &Elem<'a>) -> Res<Option<CmdData>> {
    if data.nil {
        r.skip(data)?;
        return Ok(None);
    }
    let Some(ty) = &data.xsi_type else {
        // `<data/>` is how a command without data is written; content without a type
        // cannot be told apart.
        let max = r.limits.max_string_bytes;
        let content = r.text_read(data, max)?;
        if content.nested {
            return Err(CodecError::MissingType {
                field: "data".into(),
            }
            .into());
        }
        return Ok(None);
    };
    Ok(Some(match ty {
        XsiType::CmdError => {
            let mut e = None;
            while let Some(c) = r.next_child()? {
                if c.local() == "oError" {
                    let v = nested(r, &c, read_param_error)?;
                    put(&mut e, v, "oError")?;
                } else {
                    r.skip(&c)?;
                }
            }
            CmdData::Error(need(e, "oError")?)
        }
        XsiType::CmdHash => {
            let mut hash = None;
            while let Some(c) = r.next_child()? {
                if c.local() == "hash" {
                    put(&mut hash, r.base64(&c, "hash")?, "hash")?;
                } else {
                    r.skip(&c)?;
                }
            }
            CmdData::Hash(need(hash, "hash")?)
        }
        XsiType::CmdPar => {
            let mut parameters = None;
            while let Some(c) = r.next_child()? {
                if c.local() == "parameters" {
                    let v = nested(r, &c, |r| read_params(r, 1))?;
                    put(&mut parameters, v, "parameters")?;
                } else {
                    r.skip(&c)?;
                }
            }
            CmdData::Par(need(parameters, "parameters")?)
        }
        XsiType::CmdParAndHash => {
            let (mut hash, mut parameters) = (None, None);
            while let Some(c) = r.next_child()? {
                match c.local() {
                    "hash" => put(&mut hash, r.base64(&c, "hash")?, "hash")?,
                    "parameters" => {
                        let v = nested(r, &c, |r| read_params(r, 1))?;
                        put(&mut parameters, v, "parameters")?;
                    }
                    _ => r.skip(&c)?,
                }
            }
            CmdData::ParAndHash {
                hash: need(hash, "hash")?,
                parameters: need(parameters, "parameters")?,
            }
        }
        XsiType::CmdSubscriptions => CmdData::Subscriptions(read_subscriptions(r)?),
        XsiType::CmdAppInfo => CmdData::AppInfo(Box::new(read_app_info(r)?)),
        XsiType::CmdAppState => CmdData::AppState(read_app_state(r)?),
        XsiType::StringArray => CmdData::StringArray(read_string_list(r)?),
        other => {
            let xsi_type = match other {
                XsiType::Other(s) => s.clone(),
                known => format!("{known:?}"),
            };
            r.skip(data)?;
            return Err(CodecError::UnknownType {
                field: "data".into(),
                xsi_type,
            }
            .into());
        }
    }))
}

pub(crate) fn write_command(w: &mut Writer, name: &str, c: &Command) {
    w.open(name);
    w.number("code", c.code);
    if let Some(data) = &c.data {
        write_cmd_data(w, data);
    }
    w.close(name);
}

fn write_cmd_data(w: &mut Writer, data: &CmdData) {
    match data {
        CmdData::Error(e) => {
            w.open_typed("data", "aklwngt:CmdError");
            write_param_error(w, "oError", e);
        }
        CmdData::Hash(h) => {
            w.open_typed("data", "aklwngt:CmdHash");
            w.base64("hash", h);
        }
        CmdData::Par(p) => {
            w.open_typed("data", "aklwngt:CmdPar");
            write_params(w, "parameters", p);
        }
        CmdData::ParAndHash { hash, parameters } => {
            w.open_typed("data", "aklwngt:CmdParAndHash");
            w.base64("hash", hash);
            write_params(w, "parameters", parameters);
        }
        CmdData::Subscriptions(s) => {
            w.open_typed("data", "aklwngt:CmdSubscriptions");
            if let Some(h) = &s.hash {
                w.base64("hash", h);
            }
            write_string_list(w, "typesInfo", &s.types_info);
            write_string_list(w, "typesWarning", &s.types_warning);
            write_string_list(w, "typesError", &s.types_error);
            write_string_list(w, "typesCritical", &s.types_critical);
        }
        CmdData::AppInfo(a) => {
            w.open_typed("data", "aklwngt:CmdAppInfo");
            write_app_info(w, a);
        }
        CmdData::AppState(s) => {
            w.open_typed("data", "aklwngt:CmdAppState");
            w.base64("hash", &s.hash);
            w.number("stateApp", s.state_app);
            w.number("stateRTP", s.state_rtp);
            w.opt_datetime("lastFullScan", s.last_full_scan);
            w.opt_datetime("lastUpdateTime", s.last_update_time);
            w.opt_datetime("basesDate", s.bases_date);
            w.opt_datetime("basesInstallDate", s.bases_install_date);
            w.number("basesRecords", s.bases_records);
        }
        CmdData::StringArray(items) => {
            w.open_typed("data", "aklwngt:string-array");
            write_items(w, items);
        }
    }
    w.close("data");
}

fn read_subscriptions(r: &mut Reader<'_>) -> Res<Subscriptions> {
    let mut hash = None;
    let (mut info, mut warning, mut error, mut critical) = (None, None, None, None);
    while let Some(c) = r.next_child()? {
        let slot = match c.local() {
            "hash" => {
                put(&mut hash, r.base64(&c, "hash")?, "hash")?;
                continue;
            }
            "typesInfo" => (&mut info, "typesInfo"),
            "typesWarning" => (&mut warning, "typesWarning"),
            "typesError" => (&mut error, "typesError"),
            "typesCritical" => (&mut critical, "typesCritical"),
            _ => {
                r.skip(&c)?;
                continue;
            }
        };
        let v = nested(r, &c, read_string_list)?;
        put(slot.0, v, slot.1)?;
    }
    Ok(Subscriptions {
        hash,
        types_info: info.unwrap_or_default(),
        types_warning: warning.unwrap_or_default(),
        types_error: error.unwrap_or_default(),
        types_critical: critical.unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// CmdAppInfo

fn read_app_info(r: &mut Reader<'_>) -> Res<AppInfo> {
    let (mut hash, mut prod, mut license, mut dev) = (None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "hash" => put(&mut hash, r.base64(&c, "hash")?, "hash")?,
            "prodInfo" => {
                let v = nested(r, &c, read_prod_info)?;
                put(&mut prod, v, "prodInfo")?;
            }
            "licenseInfo" => {
                let v = nested(r, &c, read_license_info)?;
                put(&mut license, v, "licenseInfo")?;
            }
            "devInfo" => {
                let v = nested(r, &c, read_dev_info)?;
                put(&mut dev, v, "devInfo")?;
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(AppInfo {
        hash: need(hash, "hash")?,
        prod_info: need(prod, "prodInfo")?,
        license_info: license.unwrap_or_default(),
        dev_info: need(dev, "devInfo")?,
    })
}

fn write_app_info(w: &mut Writer, a: &AppInfo) {
    w.base64("hash", &a.hash);
    let p = &a.prod_info;
    w.open("prodInfo");
    w.string("product-name", &p.product_name);
    w.string("product-version", &p.product_version);
    w.datetime("installTime", p.install_time);
    w.string("dn", &p.display_name);
    w.string("prodVersion", &p.prod_version);
    w.close("prodInfo");
    w.open("licenseInfo");
    if let Some(k) = &a.license_info.key_current {
        write_lic_key(w, "keyCurrent", k);
    }
    if let Some(k) = &a.license_info.key_next {
        write_lic_key(w, "keyNext", k);
    }
    w.close("licenseInfo");
    let d = &a.dev_info;
    w.open("devInfo");
    w.string("presumedName", &d.presumed_name);
    w.string("presumedGroup", &d.presumed_group);
    w.number("os-type", d.os_type);
    w.number("os-ver-major", d.os_ver_major);
    w.number("os-ver-minor", d.os_ver_minor);
    w.opt_string("os-manufacturer", d.os_manufacturer.as_deref());
    w.opt_string("os-name", d.os_name.as_deref());
    w.opt_string("os-ver", d.os_ver.as_deref());
    w.opt_number("memory", d.memory);
    w.opt_string("processor-family", d.processor_family.as_deref());
    w.opt_string("system-name", d.system_name.as_deref());
    w.opt_string("system-type", d.system_type.as_deref());
    w.close("devInfo");
}

fn read_prod_info(r: &mut Reader<'_>) -> Res<ProdInfo> {
    let (mut name, mut version, mut install, mut dn, mut full) = (None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "product-name" => put(&mut name, r.string(&c, "product-name")?, "product-name")?,
            "product-version" => put(
                &mut version,
                r.string(&c, "product-version")?,
                "product-version",
            )?,
            "installTime" => put(&mut install, r.datetime(&c, "installTime")?, "installTime")?,
            "dn" => put(&mut dn, r.string(&c, "dn")?, "dn")?,
            "prodVersion" => put(&mut full, r.string(&c, "prodVersion")?, "prodVersion")?,
            _ => r.skip(&c)?,
        }
    }
    Ok(ProdInfo {
        product_name: name.unwrap_or_default(),
        product_version: version.unwrap_or_default(),
        install_time: need(install, "installTime")?,
        display_name: dn.unwrap_or_default(),
        prod_version: full.unwrap_or_default(),
    })
}

fn read_license_info(r: &mut Reader<'_>) -> Res<LicenseInfo> {
    let (mut current, mut next) = (None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "keyCurrent" => {
                let v = nested(r, &c, read_lic_key)?;
                put(&mut current, v, "keyCurrent")?;
            }
            "keyNext" => {
                let v = nested(r, &c, read_lic_key)?;
                put(&mut next, v, "keyNext")?;
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(LicenseInfo {
        key_current: current,
        key_next: next,
    })
}

fn read_lic_key(r: &mut Reader<'_>) -> Res<LicKeyInfo> {
    let (mut ty, mut suite, mut app, mut installed, mut expires) = (None, None, None, None, None);
    let (mut period, mut count, mut serial, mut maj, mut prod) = (None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "keyType" => put(&mut ty, r.int(&c, "keyType")?, "keyType")?,
            "keyProdSuiteID" => put(&mut suite, r.int(&c, "keyProdSuiteID")?, "keyProdSuiteID")?,
            "keyAppID" => put(&mut app, r.int(&c, "keyAppID")?, "keyAppID")?,
            "keyInstallDate" => put(
                &mut installed,
                r.datetime(&c, "keyInstallDate")?,
                "keyInstallDate",
            )?,
            "keyExpirationDate" => put(
                &mut expires,
                r.datetime(&c, "keyExpirationDate")?,
                "keyExpirationDate",
            )?,
            "keyLicPeriod" => put(&mut period, r.int(&c, "keyLicPeriod")?, "keyLicPeriod")?,
            "keyLicCount" => put(&mut count, r.int(&c, "keyLicCount")?, "keyLicCount")?,
            "keySerial" => put(&mut serial, r.string(&c, "keySerial")?, "keySerial")?,
            "keyMajVer" => put(&mut maj, r.string(&c, "keyMajVer")?, "keyMajVer")?,
            "keyProdName" => put(&mut prod, r.string(&c, "keyProdName")?, "keyProdName")?,
            _ => r.skip(&c)?,
        }
    }
    Ok(LicKeyInfo {
        key_type: need(ty, "keyType")?,
        key_prod_suite_id: need(suite, "keyProdSuiteID")?,
        key_app_id: need(app, "keyAppID")?,
        key_install_date: need(installed, "keyInstallDate")?,
        key_expiration_date: need(expires, "keyExpirationDate")?,
        key_lic_period: need(period, "keyLicPeriod")?,
        key_lic_count: count,
        key_serial: serial.unwrap_or_default(),
        key_maj_ver: maj.unwrap_or_default(),
        key_prod_name: prod.unwrap_or_default(),
    })
}

fn write_lic_key(w: &mut Writer, name: &str, k: &LicKeyInfo) {
    w.open(name);
    w.number("keyType", k.key_type);
    w.number("keyProdSuiteID", k.key_prod_suite_id);
    w.number("keyAppID", k.key_app_id);
    w.datetime("keyInstallDate", k.key_install_date);
    w.datetime("keyExpirationDate", k.key_expiration_date);
    w.number("keyLicPeriod", k.key_lic_period);
    w.opt_number("keyLicCount", k.key_lic_count);
    w.string("keySerial", &k.key_serial);
    w.string("keyMajVer", &k.key_maj_ver);
    w.string("keyProdName", &k.key_prod_name);
    w.close(name);
}

fn read_dev_info(r: &mut Reader<'_>) -> Res<DevInfo> {
    let (mut name, mut group, mut os_type, mut major, mut minor) = (None, None, None, None, None);
    let mut d = DevInfo::default();
    while let Some(c) = r.next_child()? {
        match c.local() {
            "presumedName" => put(&mut name, r.string(&c, "presumedName")?, "presumedName")?,
            "presumedGroup" => put(&mut group, r.string(&c, "presumedGroup")?, "presumedGroup")?,
            "os-type" => put(&mut os_type, r.int(&c, "os-type")?, "os-type")?,
            "os-ver-major" => put(&mut major, r.int(&c, "os-ver-major")?, "os-ver-major")?,
            "os-ver-minor" => put(&mut minor, r.int(&c, "os-ver-minor")?, "os-ver-minor")?,
            "os-manufacturer" => put(
                &mut d.os_manufacturer,
                r.string(&c, "os-manufacturer")?,
                "os-manufacturer",
            )?,
            "os-name" => put(&mut d.os_name, r.string(&c, "os-name")?, "os-name")?,
            "os-ver" => put(&mut d.os_ver, r.string(&c, "os-ver")?, "os-ver")?,
            "memory" => put(&mut d.memory, r.unsigned_long(&c, "memory")?, "memory")?,
            "processor-family" => put(
                &mut d.processor_family,
                r.string(&c, "processor-family")?,
                "processor-family",
            )?,
            "system-name" => put(
                &mut d.system_name,
                r.string(&c, "system-name")?,
                "system-name",
            )?,
            "system-type" => put(
                &mut d.system_type,
                r.string(&c, "system-type")?,
                "system-type",
            )?,
            _ => r.skip(&c)?,
        }
    }
    d.presumed_name = name.unwrap_or_default();
    d.presumed_group = group.unwrap_or_default();
    d.os_type = need(os_type, "os-type")?;
    d.os_ver_major = need(major, "os-ver-major")?;
    d.os_ver_minor = need(minor, "os-ver-minor")?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// CmdAppState

fn read_app_state(r: &mut Reader<'_>) -> Res<AppState> {
    let (mut hash, mut app, mut rtp, mut records) = (None, None, None, None);
    let (mut scan, mut update, mut bases, mut installed) = (None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "hash" => put(&mut hash, r.base64(&c, "hash")?, "hash")?,
            "stateApp" => put(&mut app, r.int(&c, "stateApp")?, "stateApp")?,
            "stateRTP" => put(&mut rtp, r.int(&c, "stateRTP")?, "stateRTP")?,
            "lastFullScan" => put(&mut scan, r.datetime(&c, "lastFullScan")?, "lastFullScan")?,
            "lastUpdateTime" => put(
                &mut update,
                r.datetime(&c, "lastUpdateTime")?,
                "lastUpdateTime",
            )?,
            "basesDate" => put(&mut bases, r.datetime(&c, "basesDate")?, "basesDate")?,
            "basesInstallDate" => put(
                &mut installed,
                r.datetime(&c, "basesInstallDate")?,
                "basesInstallDate",
            )?,
            "basesRecords" => put(&mut records, r.int(&c, "basesRecords")?, "basesRecords")?,
            _ => r.skip(&c)?,
        }
    }
    Ok(AppState {
        hash: need(hash, "hash")?,
        state_app: need(app, "stateApp")?,
        state_rtp: need(rtp, "stateRTP")?,
        last_full_scan: scan,
        last_update_time: update,
        bases_date: bases,
        bases_install_date: installed,
        bases_records: need(records, "basesRecords")?,
    })
}

// ---------------------------------------------------------------------------------------------
// sync-info

/// Missing hashes read as empty: they differ from any stored hash, which only means that the
/// item gets synchronised.
pub(crate) fn read_sync_info(r: &mut Reader<'_>) -> Res<SyncInfo> {
    let mut s = SyncInfo::default();
    let (mut stgs, mut pol, mut sbsc, mut info, mut state) = (None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        let (slot, name) = match c.local() {
            "hash-stgs" => (&mut stgs, "hash-stgs"),
            "hash-pol" => (&mut pol, "hash-pol"),
            "hash-sbsc" => (&mut sbsc, "hash-sbsc"),
            "hash-info" => (&mut info, "hash-info"),
            "hash-state" => (&mut state, "hash-state"),
            _ => {
                r.skip(&c)?;
                continue;
            }
        };
        let v = r.base64(&c, name)?;
        put(slot, v, name)?;
    }
    s.hash_stgs = stgs.unwrap_or_default();
    s.hash_pol = pol.unwrap_or_default();
    s.hash_sbsc = sbsc.unwrap_or_default();
    s.hash_info = info.unwrap_or_default();
    s.hash_state = state.unwrap_or_default();
    Ok(s)
}

pub(crate) fn write_sync_info(w: &mut Writer, name: &str, s: &SyncInfo) {
    w.open(name);
    w.base64("hash-stgs", &s.hash_stgs);
    w.base64("hash-pol", &s.hash_pol);
    w.base64("hash-sbsc", &s.hash_sbsc);
    w.base64("hash-info", &s.hash_info);
    w.base64("hash-state", &s.hash_state);
    w.close(name);
}

// ---------------------------------------------------------------------------------------------
// events: lenient

/// Wire names of odd fields, each listed once (which also bounds the list).
struct Odd(Vec<String>);

impl Odd {
    fn note(&mut self, name: &str) {
        if !self.0.iter().any(|n| n == name) {
            self.0.push(name.to_owned());
        }
    }
}

/// Text of an event field: `None` if nil or if it holds markup (noted as odd); cut to the
/// string limit (noted as odd) rather than refused.
fn lenient_text<'a>(
    r: &mut Reader<'a>,
    elem: &Elem<'a>,
    name: &str,
    odd: &mut Odd,
) -> Res<Option<Cow<'a, str>>> {
    if elem.nil {
        r.skip(elem)?;
        return Ok(None);
    }
    let max = r.limits.max_string_bytes;
    let t = r.text_read(elem, max)?;
    if t.nested {
        odd.note(name);
        return Ok(None);
    }
    if t.truncated {
        odd.note(name);
    }
    Ok(Some(t.text))
}

fn lenient_value<'a, T>(
    r: &mut Reader<'a>,
    elem: &Elem<'a>,
    name: &str,
    odd: &mut Odd,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Res<Option<T>> {
    let Some(text) = lenient_text(r, elem, name, odd)? else {
        return Ok(None);
    };
    if lexical::trim_xml(&text).is_empty() {
        return Ok(None);
    }
    let v = parse(&text);
    if v.is_none() {
        odd.note(name);
    }
    Ok(v)
}

/// Keeps the first occurrence of a field; a repeat is odd.
fn keep_first<T>(slot: &mut Option<T>, v: Option<T>, name: &str, odd: &mut Odd) {
    if let Some(v) = v {
        if slot.is_some() {
            odd.note(name);
        } else {
            *slot = Some(v);
        }
    }
}

fn lenient_string<'a>(
    r: &mut Reader<'a>,
    elem: &Elem<'a>,
    slot: &mut Option<String>,
    name: &str,
    odd: &mut Odd,
) -> Res<()> {
    let v = lenient_text(r, elem, name, odd)?.map(Cow::into_owned);
    keep_first(slot, v, name, odd);
    Ok(())
}

/// `event-info-array`: the events of one `PutEvents`.
pub(crate) fn read_events(r: &mut Reader<'_>) -> Res<Vec<EventInfo>> {
    let mut events = Vec::new();
    while let Some(c) = r.next_child()? {
        if c.local() != "item" {
            r.skip(&c)?;
            continue;
        }
        r.count_event()?;
        if c.nil {
            r.skip(&c)?;
            continue;
        }
        events.push(read_event(r)?);
    }
    Ok(events)
}

fn read_event(r: &mut Reader<'_>) -> Res<EventInfo> {
    let mut odd = Odd(Vec::new());
    let mut id = None;
    let mut body: Option<EventBody> = None;
    while let Some(c) = r.next_child()? {
        match c.local() {
            "eventId" => lenient_string(r, &c, &mut id, "eventId", &mut odd)?,
            "body" => {
                if body.is_some() || c.nil {
                    odd.note("body");
                    r.skip(&c)?;
                } else {
                    body = Some(read_event_body(r, &mut odd)?);
                }
            }
            _ => r.skip(&c)?,
        }
    }
    if id.is_none() {
        odd.note("eventId");
    }
    let mut body = body.unwrap_or_else(|| {
        odd.note("body");
        EventBody::default()
    });
    body.odd_fields = odd.0;
    Ok(EventInfo {
        event_id: id.unwrap_or_default(),
        body,
    })
}

fn par_index(name: &str) -> Option<usize> {
    match name.strip_prefix("par")?.as_bytes() {
        [d @ b'1'..=b'9'] => Some(usize::from(d - b'1')),
        _ => None,
    }
}

fn read_event_body(r: &mut Reader<'_>, odd: &mut Odd) -> Res<EventBody> {
    let mut b = EventBody::default();
    while let Some(c) = r.next_child()? {
        match c.local() {
            "severity" => {
                let v = lenient_value(r, &c, "severity", odd, lexical::parse_i32)?;
                keep_first(&mut b.severity, v, "severity", odd);
            }
            "product-name" => lenient_string(r, &c, &mut b.product_name, "product-name", odd)?,
            "product-version" => {
                lenient_string(r, &c, &mut b.product_version, "product-version", odd)?
            }
            "event-type" => lenient_string(r, &c, &mut b.event_type, "event-type", odd)?,
            "event-type-display-name" => lenient_string(
                r,
                &c,
                &mut b.event_type_display_name,
                "event-type-display-name",
                odd,
            )?,
            "descr" => lenient_string(r, &c, &mut b.descr, "descr", odd)?,
            "locid" => {
                let v = lenient_value(r, &c, "locid", odd, lexical::parse_i32)?;
                keep_first(&mut b.locid, v, "locid", odd);
            }
            "rise-time" => {
                let v = lenient_value(r, &c, "rise-time", odd, lexical::parse_datetime)?;
                keep_first(&mut b.rise_time, v, "rise-time", odd);
            }
            "rise-time-ms" => {
                let v = lenient_value(r, &c, "rise-time-ms", odd, lexical::parse_i32)?;
                keep_first(&mut b.rise_time_ms, v, "rise-time-ms", odd);
            }
            other => match par_index(other) {
                Some(i) => {
                    const PARS: [&str; 9] = [
                        "par1", "par2", "par3", "par4", "par5", "par6", "par7", "par8", "par9",
                    ];
                    lenient_string(r, &c, &mut b.par[i], PARS[i], odd)?;
                }
                None => r.skip(&c)?,
            },
        }
    }
    Ok(b)
}

pub(crate) fn write_events(w: &mut Writer, name: &str, events: &[EventInfo]) {
    w.open(name);
    for e in events {
        w.open("item");
        w.string("eventId", &e.event_id);
        let b = &e.body;
        w.open("body");
        w.opt_number("severity", b.severity);
        w.opt_string("product-name", b.product_name.as_deref());
        w.opt_string("product-version", b.product_version.as_deref());
        w.opt_string("event-type", b.event_type.as_deref());
        w.opt_string(
            "event-type-display-name",
            b.event_type_display_name.as_deref(),
        );
        w.opt_string("descr", b.descr.as_deref());
        w.opt_number("locid", b.locid);
        w.opt_datetime("rise-time", b.rise_time);
        w.opt_number("rise-time-ms", b.rise_time_ms);
        for (i, name) in [
            "par1", "par2", "par3", "par4", "par5", "par6", "par7", "par8", "par9",
        ]
        .iter()
        .enumerate()
        {
            w.opt_string(name, b.par[i].as_deref());
        }
        w.close("body");
        w.close("item");
    }
    w.close(name);
}

// ---------------------------------------------------------------------------------------------
// update files

pub(crate) fn read_file_info(r: &mut Reader<'_>) -> Res<FileInfo> {
    let (mut name, mut dir, mut perm, mut created, mut size) = (None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "fileName" => put(&mut name, r.string(&c, "fileName")?, "fileName")?,
            "isDir" => put(&mut dir, r.boolean(&c, "isDir")?, "isDir")?,
            "readPermission" => put(
                &mut perm,
                r.boolean(&c, "readPermission")?,
                "readPermission",
            )?,
            "createTime" => put(&mut created, r.datetime(&c, "createTime")?, "createTime")?,
            "fullFileSize" => put(
                &mut size,
                r.unsigned_long(&c, "fullFileSize")?,
                "fullFileSize",
            )?,
            _ => r.skip(&c)?,
        }
    }
    Ok(FileInfo {
        file_name: name.unwrap_or_default(),
        is_dir: need(dir, "isDir")?,
        read_permission: need(perm, "readPermission")?,
        create_time: need(created, "createTime")?,
        full_file_size: need(size, "fullFileSize")?,
    })
}

pub(crate) fn write_file_info(w: &mut Writer, name: &str, f: &FileInfo) {
    w.open(name);
    w.string("fileName", &f.file_name);
    w.boolean("isDir", f.is_dir);
    w.boolean("readPermission", f.read_permission);
    w.datetime("createTime", f.create_time);
    w.number("fullFileSize", f.full_file_size);
    w.close(name);
}

pub(crate) fn read_file_chunk(r: &mut Reader<'_>) -> Res<FileChunk> {
    let (mut name, mut crc, mut start, mut size, mut buff) = (None, None, None, None, None);
    while let Some(c) = r.next_child()? {
        match c.local() {
            "fileName" => put(&mut name, r.string(&c, "fileName")?, "fileName")?,
            "CRC" => put(&mut crc, r.unsigned_long(&c, "CRC")?, "CRC")?,
            "startPosInFile" => put(
                &mut start,
                r.unsigned_long(&c, "startPosInFile")?,
                "startPosInFile",
            )?,
            "fullFileSize" => put(
                &mut size,
                r.unsigned_long(&c, "fullFileSize")?,
                "fullFileSize",
            )?,
            "buff" => put(&mut buff, r.base64(&c, "buff")?, "buff")?,
            _ => r.skip(&c)?,
        }
    }
    let crc = u32::try_from(need(crc, "CRC")?).map_err(|_| CodecError::BadValue {
        field: "CRC".into(),
        expected: "32-bit CRC".into(),
    })?;
    Ok(FileChunk {
        file_name: name.unwrap_or_default(),
        crc,
        start_pos_in_file: need(start, "startPosInFile")?,
        full_file_size: need(size, "fullFileSize")?,
        buff: buff.unwrap_or_default(),
    })
}

pub(crate) fn write_file_chunk(w: &mut Writer, name: &str, c: &FileChunk) {
    w.open(name);
    w.string("fileName", &c.file_name);
    w.number("CRC", c.crc);
    w.number("startPosInFile", c.start_pos_in_file);
    w.number("fullFileSize", c.full_file_size);
    w.base64("buff", &c.buff);
    w.close(name);
}
