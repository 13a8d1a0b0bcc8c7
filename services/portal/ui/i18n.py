"""Korean (default) and English: one small catalogue, looked up by key. A missing Korean text falls back to
English, a missing key to the key itself, so a gap shows up on the page rather than as an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"

#: key -> (Korean, English)
MESSAGES: dict[str, tuple[str, str]] = {
    "app.title": ("배터리 전주기 이력 포털", "Battery lifecycle history portal"),
    "app.short": ("배터리 이력", "Battery history"),
    "nav.lookup": ("조회", "Look up"),
    "nav.dashboard": ("대시보드", "Dashboard"),
    "nav.ops": ("운영", "Operations"),
    "nav.signin": ("로그인", "Sign in"),
    "nav.signout": ("로그아웃", "Sign out"),
    "nav.skip": ("본문으로 건너뛰기", "Skip to content"),
    "lang.switch": ("English", "한국어"),
    "signed_in_as": ("{org} ({role}) 로그인 중", "Signed in as {org} ({role})"),
    # home and look-up
    "home.title": ("배터리 조회", "Look up a battery"),
    "home.lead": (
        "배터리 식별번호, 차대번호(VIN), GS1 디지털 링크 또는 QR 코드의 주소를 입력하세요.",
        "Enter a battery ID, a vehicle VIN, a GS1 Digital Link or the address in a QR code.",
    ),
    "home.q": ("식별번호, VIN 또는 디지털 링크", "Battery ID, VIN or Digital Link"),
    "home.go": ("조회", "Look up"),
    "home.public_note": (
        "로그인하지 않으면 공개 여권 정보만 보입니다.",
        "Without signing in you see the public passport only.",
    ),
    "home.examples": ("예: KR-LGES-P000001", "e.g. KR-LGES-P000001"),
    "home.yours": ("바로 가기", "Shortcuts"),
    "home.log_cosigned": (
        "투명성 로그: 최신 체크포인트(트리 크기 {size})에 공동 서명한 기관: {witnesses}",
        "Transparency log: the newest checkpoint (tree size {size}) is cosigned by {witnesses}",
    ),
    "home.log_uncosigned": (
        "투명성 로그: 최신 체크포인트(트리 크기 {size})에 아직 공동 서명한 부처가 없습니다.",
        "Transparency log: no ministry has cosigned the newest checkpoint (tree size {size}) yet.",
    ),
    "lookup.empty": ("조회할 식별번호를 입력하세요.", "Enter an identifier to look up."),
    "lookup.not_found": (
        "'{q}'에 해당하는 배터리가 없습니다. 식별번호를 확인하거나 QR 코드의 전체 주소를 붙여 넣어 보세요.",
        "No battery is known as '{q}'. Check the identifier, or paste the whole address from the QR code.",
    ),
    "lookup.vin_needs_signin": (
        "차대번호로 조회하려면 로그인해야 합니다. 배터리 식별번호나 QR 코드로는 누구나 공개 여권을 볼 수 있습니다.",
        "Looking up by VIN needs sign-in. Anyone can open the public passport with a battery ID or its QR code.",
    ),
    # sign-in
    "signin.title": ("로그인", "Sign in"),
    "signin.dev_lead": (
        "개발 환경입니다. 데모 참여자를 골라 로컬 토큰으로 로그인합니다.",
        "This is a development system: pick a demo participant and sign in with a local token.",
    ),
    "signin.role": ("역할", "Role"),
    "signin.org": ("기관 코드", "Organisation"),
    "signin.ministry": ("부처", "Ministry"),
    "signin.submit": ("로그인", "Sign in"),
    "signin.oidc": ("기관 계정으로 로그인", "Sign in with your organisation account"),
    "signin.oidc_lead": (
        "소속 기관의 통합 인증(OIDC)으로 로그인합니다.",
        "You sign in through your organisation's single sign-on (OIDC).",
    ),
    "signin.not_configured": (
        "이 포털에는 로그인 방법이 설정되어 있지 않습니다. 운영자에게 BT_PORTAL_UI_OIDC_* 설정을 요청하세요.",
        "No way to sign in is configured on this portal. Ask the operator to set BT_PORTAL_UI_OIDC_*.",
    ),
    "signin.oidc_failed": (
        "기관 계정 로그인을 마치지 못했습니다. 처음부터 다시 로그인하세요.",
        "Signing in with your organisation account did not complete. Please start the sign-in again.",
    ),
    "signin.oidc_claims": (
        "기관 계정에 이 포털의 역할, 기관 또는 부처 정보가 없거나 올바르지 않습니다. 관리자에게 문의하세요.",
        "Your organisation account carries no valid role, organisation or ministry for this portal. "
        "Ask your administrator.",
    ),
    "signin.bad_choice": (
        "부처 역할에는 부처를 골라야 하고, 다른 역할에는 부처를 고르지 않습니다.",
        "A ministry participant needs a ministry; other roles take none.",
    ),
    "signin.bad_org": (
        "기관 코드는 영문 대문자, 숫자, '-'로 1~32자여야 합니다.",
        "The organisation code must be 1 to 32 capital letters, digits or '-'.",
    ),
    "signout.done": ("로그아웃했습니다.", "You have signed out."),
    # battery page
    "battery.title": ("배터리 {id}", "Battery {id}"),
    "battery.identity": ("식별 정보와 모델", "Identity and model"),
    "battery.current": ("현재 상태", "Now"),
    "battery.composition": ("구성", "Composition"),
    "battery.composition_at": ("기준 시점", "As built at"),
    "battery.composition_now": ("현재", "now"),
    "battery.show": ("보기", "Show"),
    "battery.no_components": (
        "이 시점에 들어 있는 하위 부품이 없습니다. 다른 날짜를 골라 보세요.",
        "Nothing was inside it at that time. Try another date.",
    ),
    "battery.inside": ("상위 부품", "Inside"),
    "battery.state_at": ("{at} 시점 상태: {state}, 보관자 {custodian}", "On {at}: {state}, held by {custodian}"),
    "battery.timeline": ("이력", "Lifecycle timeline"),
    "battery.unchecked": (
        "타당성 미확인 (등록 정보 없음: {rules})",
        "Plausibility unchecked (the registry lacks the facts: {rules})",
    ),
    "battery.no_events": (
        "아직 포털에 도착한 이벤트가 없습니다. 잠시 후 새로 고침하세요.",
        "No event has reached the portal yet. Refresh in a moment.",
    ),
    "battery.declared": (
        "오류로 선언됨: #{seq}, {actor}, {at} (사유: {reason}). 상태·보관·구성·여권·통계에 반영되지 않습니다.",
        "Declared in error by #{seq} ({actor}, {at}; reason: {reason}). It has no effect on state, custody, "
        "composition, passports or any figure.",
    ),
    "battery.amendments": ("등록 정보 정정 기록", "Amendments to the registry facts"),
    "battery.amendments_lead": (
        "등록 정보는 고쳐 쓰지 않고 정정 기록으로만 바뀝니다. 위의 식별 정보는 마지막 정정 결과입니다.",
        "Registry facts are never edited in place, only amended by a record; the identity above shows the latest.",
    ),
    "battery.amendment_reason": ("사유: {reason}", "Why: {reason}"),
    "battery.amendment_fact": ("항목", "Fact"),
    "battery.amendment_before": ("이전", "Before"),
    "battery.amendment_after": ("이후", "After"),
    "battery.chain": ("해시 체인", "Hash chain"),
    "battery.chain.valid": ("연결 정상", "linked and intact"),
    "battery.chain.incomplete": ("일부 이벤트 미도착", "an event has not arrived yet"),
    "battery.chain.broken": ("연결 끊김", "broken"),
    "battery.chain.empty": ("이벤트 없음", "no events"),
    "battery.chain_detail": ("이벤트 {n}건, 마지막 해시 {hash}", "{n} events, last hash {hash}"),
    "battery.passports": ("여권 (수명별)", "Passports (one per life)"),
    "battery.predecessor": ("이전 여권", "Predecessor"),
    "battery.successor": ("다음 여권", "Successor"),
    "battery.passport_tabs": ("배터리 여권", "Battery passport"),
    "battery.access_level": ("접근 수준: {level}", "Access level: {level}"),
    "battery.restricted": ("접근 수준 밖 항목", "Above your access level"),
    "battery.unavailable": ("포털에 없는 항목", "Not held by the portal"),
    "battery.public_page": ("공개 여권 보기", "Open the public passport"),
    "battery.as_of": ("{at} 기준", "As of {at}"),
    "battery.aliases": ("별칭", "Aliases"),
    "battery.no_registry": (
        "등록 정보가 아직 포털에 도착하지 않았습니다.",
        "The registration has not reached the portal yet.",
    ),
    "passport.title": ("배터리 여권 {id}", "Battery passport {id}"),
    "passport.public_lead": (
        "누구나 볼 수 있는 공개 항목입니다. 재료 질량, 상태, 이력은 권한이 있는 사용자에게만 보입니다.",
        "These are the public fields anyone may see. Material masses, condition and history are shown to "
        "authorised users only.",
    ),
    "passport.hidden_fields": ("공개되지 않는 항목", "Fields not shown publicly"),
    "passport.signed": ("서명된 여권 (JWS, 오프라인 검증)", "Signed passport (JWS, verifiable offline)"),
    # dashboards
    "dash.title": ("{ministry} 대시보드", "{ministry} dashboard"),
    "dash.from": ("시작 월", "From month"),
    "dash.to": ("종료 월", "To month"),
    "dash.region": ("지역", "Region"),
    "dash.all_regions": ("전체 지역", "All regions"),
    "dash.apply": ("적용", "Apply"),
    "dash.csv": ("CSV 내려받기", "Download CSV"),
    "dash.period_note": (
        "월 단위(한국 시간)로 집계합니다. '현재' 항목은 기간과 관계없이 지금의 재고입니다.",
        "Figures are per Korean calendar month. Sections marked 'now' are stocks today, whatever the period.",
    ),
    "dash.empty_table": (
        "이 기간과 지역에는 기록이 없습니다. 기간을 넓히거나 지역을 '전체'로 바꿔 보세요.",
        "Nothing was recorded for this period and region. Widen the period or choose all regions.",
    ),
    "dash.choose": ("부처를 고르세요", "Choose a ministry"),
    # operations
    "ops.title": ("스트림 운영 현황", "Stream operations"),
    "ops.refresh": ("{s}초마다 자동 새로 고침", "Refreshes every {s} seconds"),
    "ops.updated": ("갱신 {at}", "Updated {at}"),
    "ops.topics": ("토픽", "Topics"),
    "ops.groups": ("컨슈머 그룹 (브로커 오프셋 기준 지연)", "Consumer groups (lag by broker offsets)"),
    "ops.app_lag": ("애플리케이션 지연 (이벤트 위치 기준)", "Application lag (by event positions)"),
    "ops.outbox": ("아웃박스 적체", "Outbox backlog"),
    "ops.dlq": ("데드 레터", "Dead letters"),
    "ops.consumer": ("포털 컨슈머", "Portal consumer"),
    "ops.dlq_hint": (
        "내용 확인과 재처리: batterytrace dlq list / batterytrace dlq replay",
        "To inspect and re-drive: batterytrace dlq list / batterytrace dlq replay",
    ),
    "ops.no_topics": (
        "아직 토픽이 없습니다. 서비스가 처음 이벤트를 발행하면 생깁니다.",
        "No topics yet. They appear when a service publishes its first event.",
    ),
    "ops.no_groups": (
        "활성 컨슈머 그룹이 없습니다. 컨슈머가 실행 중인지 확인하세요.",
        "No consumer group has committed yet. Check that the consumers are running.",
    ),
    "ops.unreachable": ("{service}에 연결할 수 없습니다: {error}", "Cannot reach {service}: {error}"),
    "ops.broker_error": ("브로커에서 정보를 가져오지 못했습니다: {error}", "The broker did not answer: {error}"),
    "ops.running": ("실행 중", "running"),
    "ops.stopped": ("중지됨", "stopped"),
    "ops.no_dlq": ("데드 레터가 없습니다.", "No dead letters."),
    # errors
    "error.title": ("요청을 처리할 수 없습니다", "This page cannot be shown"),
    "error.home": ("조회 화면으로 돌아가기", "Back to look-up"),
    "error.signin_needed": ("이 화면을 보려면 로그인하세요.", "Sign in to see this page."),
    "error.not_handled": (
        "귀하의 기관({org})은 이 배터리를 제조하거나 취급한 적이 없어 이력을 볼 수 없습니다. 공개 여권은 누구나 볼 수 있습니다.",
        "Your organisation ({org}) neither made nor handled this battery, so its history is not shown to you. "
        "Anyone may see its public passport.",
    ),
    "error.wrong_ministry": (
        "이 대시보드는 {ministry} 소속 직원만 볼 수 있습니다.",
        "This dashboard is for {ministry} staff only.",
    ),
    "error.operators_only": (
        "운영 화면은 플랫폼 운영자만 볼 수 있습니다.",
        "The operations screen is for platform operators only.",
    ),
    "error.unknown_battery": (
        "포털에 '{id}' 배터리가 없습니다. 식별번호를 확인하세요. 방금 등록했다면 잠시 후 다시 시도하세요.",
        "The portal knows no battery '{id}'. Check the ID; if it was just registered, try again in a moment.",
    ),
    "error.unknown_ministry": (
        "'{code}'라는 부처는 없습니다. MOTIE, MOLIT, MCEE, KATS 중 하나를 고르세요.",
        "There is no ministry '{code}'. Choose MOTIE, MOLIT, MCEE or KATS.",
    ),
    "error.unknown_table": ("이 대시보드에 '{table}' 표는 없습니다.", "This dashboard has no table '{table}'."),
    "error.unknown_vehicle": (
        "조회할 수 있는 차량 중 '{vin}'은(는) 없습니다.",
        "No vehicle you may see is known as '{vin}'.",
    ),
    # a vehicle (VIN): its batteries over time
    "vehicle.title": ("차량 {vin}", "Vehicle {vin}"),
    "vehicle.erased": ("삭제됨 (개인정보)", "erased (personal data)"),
    "vehicle.pseudonym": ("가명 식별자", "Pseudonym"),
    "vehicle.now": ("장착된 배터리", "Batteries installed"),
    "vehicle.at": ("{at} 기준", "as of {at}"),
    "vehicle.none": ("이 시점에 장착된 배터리가 없습니다.", "No battery was installed at that time."),
    "vehicle.history": ("장착 이력 (변경 등록)", "Installation history (change registrations)"),
    "vehicle.battery": ("배터리", "Battery"),
    "vehicle.from": ("장착", "Installed"),
    "vehicle.until": ("탈거", "Removed"),
    "vehicle.still": ("장착 중", "still installed"),
    "vehicle.reason": ("탈거 사유", "Reason"),
    "vehicle.by": ("장착 업체", "Installed by"),
    "vehicle.recall": ("리콜", "Recall"),
    "vehicle.show_at": ("날짜 기준 보기", "Show as of a date"),
    "vehicle.link": ("차량 이력 보기", "Vehicle history"),
    "error.invalid_input": ("입력값을 확인하세요: {detail}", "Please check what you entered: {detail}"),
    "error.not_found": ("찾는 화면이 없습니다.", "There is no such page."),
    "error.internal": (
        "일시적인 문제로 화면을 만들지 못했습니다. 잠시 후 다시 시도하세요. 계속되면 운영자에게 요청 ID {rid}를 알려 주세요.",
        "Something went wrong on our side. Try again in a moment; if it keeps happening, give the operator "
        "request ID {rid}.",
    ),
    "error.csrf": (
        "이 양식은 만료되었거나 이 포털에서 보낸 것이 아닙니다. 화면을 새로 고친 뒤 다시 시도하세요.",
        "This form is out of date or was not sent from this portal. Reload the page and try again.",
    ),
    "error.session": (
        "로그인이 만료되었거나 올바르지 않습니다. 다시 로그인하세요.",
        "Your sign-in has expired or is not valid. Please sign in again.",
    ),
    # common words
    "word.yes": ("예", "yes"),
    "word.no": ("아니요", "no"),
    "word.none": ("없음", "none"),
    "word.now": ("현재", "now"),
    "word.total": ("합계", "total"),
    "word.unknown_region": ("지역 미상", "no region"),
    # facts on the battery page
    "fact.model": ("모델", "Model"),
    "fact.kind": ("유형", "Kind"),
    "fact.chemistry": ("화학계", "Chemistry"),
    "fact.manufacturer": ("제조사", "Manufacturer"),
    "fact.serial": ("일련번호", "Serial number"),
    "fact.manufactured": ("제조일시", "Manufactured"),
    "fact.site": ("제조 장소", "Site"),
    "fact.energy": ("정격 에너지 kWh", "Rated energy kWh"),
    "fact.capacity": ("정격 용량 Ah", "Rated capacity Ah"),
    "fact.voltage": ("공칭 전압 V", "Nominal voltage V"),
    "fact.mass": ("질량 kg", "Mass kg"),
    "fact.state": ("상태", "State"),
    "fact.since": ("상태 시작", "Since"),
    "fact.custodian": ("보관자", "Custodian"),
    "fact.region": ("지역", "Region"),
    "fact.grade": ("등급", "Grade"),
    "fact.soh": ("SoH %", "SoH %"),
    "fact.cycles": ("사이클 수", "Cycles"),
    "fact.vin": ("차대번호", "VIN"),
    "fact.inside": ("상위 부품", "Inside"),
    "fact.safety": ("안전검사", "Safety inspection"),
    "ops.consumer_state": ("상태", "State"),
    "ops.applied": ("적용", "Applied"),
    "ops.dead_lettered": ("데드 레터", "Dead-lettered"),
    "ops.last_batch": ("마지막 배치", "Last batch"),
    # dashboard figures, charts and tables
    "fig.registered": ("등록 배터리", "Batteries registered"),
    "fig.packs": ("등록 팩", "Packs registered"),
    "fig.pack_kwh": ("팩 정격 에너지", "Pack rated energy"),
    "fig.repurposed": ("재사용 전환", "Repurposed"),
    "fig.remanufactured": ("재제조", "Remanufactured"),
    "fig.recycled": ("재활용", "Recycled"),
    "fig.in_service_now": ("현재 사용 중", "In service now"),
    "fig.installations": ("장착", "Installations"),
    "fig.inspections": ("검사", "Inspections"),
    "fig.avg_soh": ("평균 SoH", "Average SoH"),
    "fig.removals": ("탈거", "Removals"),
    "fig.incidents": ("사고", "Incidents"),
    "fig.collected": ("수거", "Collected"),
    "fig.removed_not_collected": ("탈거 후 미수거 (현재)", "Removed, not collected (now)"),
    "fig.collected_not_graded": ("수거 후 미평가 (현재)", "Collected, not graded (now)"),
    "fig.over_30_days": ("30일 넘게 대기 (현재)", "Waiting over 30 days (now)"),
    "fig.black_mass": ("블랙매스", "Black mass"),
    "fig.reused_now": ("재사용·재제조 배터리 (현재)", "Reused and remanufactured (now)"),
    "fig.safety_inspections": ("안전검사", "Safety inspections"),
    "fig.safety_pass": ("합격", "Passed"),
    "fig.safety_fail": ("불합격", "Failed"),
    "fig.incidents_after_reuse": ("재사용 후 사고", "Incidents after reuse"),
    "chart.registrations_by_month": ("월별 등록", "Registrations by month"),
    "chart.outcomes": ("재사용·재제조·재활용", "Reuse, remanufacture, recycling"),
    "chart.recovered": ("회수된 핵심 광물", "Recovered critical minerals"),
    "chart.in_service_by_region": ("지역별 사용 중 (현재)", "In service by region (now)"),
    "chart.removals_by_reason": ("사유별 탈거", "Removals by reason"),
    "chart.soh_distribution": ("SoH 분포", "SoH distribution"),
    "chart.collected_by_region": ("지역별 수거", "Collected by region"),
    "chart.recovery_rate": ("재료별 회수율", "Recovery rate by material"),
    "chart.backlog": ("적체 (현재)", "Backlogs (now)"),
    "chart.reused_by_safety": ("안전검사 결과별 재사용 배터리 (현재)", "Reused batteries by safety result (now)"),
    "chart.grades": ("등급 분포", "Grades"),
    "chart.safety_results": ("안전검사 결과", "Safety inspection results"),
    "table.registrations": ("월·제조사·화학계·유형별 등록", "Registrations by month, maker, chemistry, kind"),
    "table.outcomes_by_month": ("월별 결과", "Outcomes by month"),
    "table.outcomes_by_manufacturer": ("제조사별 결과", "Outcomes by manufacturer"),
    "table.recovered_by_month": ("월별 회수 광물 (kg)", "Recovered minerals by month (kg)"),
    "table.recycled_content": ("신고된 재생원료 비율", "Declared recycled content"),
    "table.in_service_now": ("지역별 사용 중", "In service by region"),
    "table.installations": ("장착", "Installations"),
    "table.inspections_by_region": ("지역별 검사", "Inspections by region"),
    "table.soh_distribution": ("SoH 분포", "SoH distribution"),
    "table.removals": ("지역·사유별 탈거", "Removals by region and reason"),
    "table.incidents": ("유형·심각도별 사고", "Incidents by kind and severity"),
    "table.incidents_by_region": ("지역별 사고", "Incidents by region"),
    "table.collected_by_region_centre": ("지역·수거센터별 수거", "Collected by region and centre"),
    "table.collected_by_month": ("월별 수거", "Collected by month"),
    "table.backlog_now": ("적체", "Backlogs"),
    "table.recycling_by_process": ("공정별 재활용", "Recycling by process"),
    "table.recovery": ("재료 회수율과 EU 목표", "Material recovery against EU targets"),
    "table.disposals": ("방법별 폐기", "Disposals by method"),
    "table.reused_now": ("상태·안전검사별 재사용 배터리", "Reused batteries by status and safety"),
    "table.safety_inspections": ("결과·기관별 안전검사", "Safety inspections by result and body"),
    "table.grades": ("등급", "Grades"),
    "table.incidents_after_reuse": ("재사용 후 사고", "Incidents after reuse"),
    "table.pre_removal_gradings": ("탈거 전 성능평가 (등급별)", "Pre-removal gradings by grade"),
    "table.recycling_efficiency": (
        "재활용 효율 (리튬계, EU 2025·2030 목표)",
        "Recycling efficiency (lithium-based, EU 2025 and 2030 targets)",
    ),
    "table.certificates_expiring": (
        "90일 안에 만료되는 KC 10031 인증서",
        "KC 10031 certificates expiring within 90 days",
    ),
    "table.in_service_on_expired_certificate": (
        "만료된 인증서로 사용 중인 배터리",
        "In service on an expired certificate",
    ),
}

#: Labels of codes the data carries: lifecycle event types, states, roles, ministries, regions, columns.
LABELS: dict[str, tuple[str, str]] = {
    # event types
    "MANUFACTURED": ("제조", "Manufactured"),
    "ASSEMBLED": ("조립", "Assembled"),
    "DISASSEMBLED": ("분해", "Disassembled"),
    "INSTALLED": ("장착", "Installed"),
    "INSPECTED": ("검사", "Inspected"),
    "REMOVED": ("탈거", "Removed"),
    "COLLECTED": ("수거", "Collected"),
    "GRADED": ("성능평가", "Graded"),
    "REMANUFACTURED": ("재제조", "Remanufactured"),
    "REPURPOSED": ("재사용 전환", "Repurposed"),
    "SAFETY_INSPECTED": ("안전검사", "Safety-inspected"),
    "RECYCLED": ("재활용", "Recycled"),
    "DISPOSED": ("폐기", "Disposed"),
    "TRANSFERRED": ("인계", "Transferred"),
    "INCIDENT": ("사고", "Incident"),
    "BMS_REPORTED": ("BMS 측정값 보고", "BMS readings reported"),
    "ERROR_DECLARED": ("오류 선언", "Error declared"),
    # correction reasons (EPCIS CBV error reasons) and amendable facts
    "did_not_occur": ("발생하지 않음", "did not occur"),
    "incorrect_data": ("잘못된 데이터", "incorrect data"),
    "manufactured_at": ("제조일", "manufacture date"),
    "manufacturing_site": ("제조 사업장", "manufacturing site"),
    "materials_kg": ("원료 함량 (kg)", "material content (kg)"),
    "recycled_content_pct": ("재생 원료 비율 (%)", "recycled content (%)"),
    "carbon_footprint_kg_co2e_per_kwh": ("탄소 발자국 (kgCO2e/kWh)", "carbon footprint (kg CO2e/kWh)"),
    # states
    "manufactured": ("제조됨", "manufactured"),
    "assembled": ("조립됨", "assembled"),
    "in_service": ("사용 중", "in service"),
    "removed": ("탈거됨", "removed"),
    "collected": ("수거됨", "collected"),
    "graded": ("평가됨", "graded"),
    "remanufactured": ("재제조됨", "remanufactured"),
    "repurposed": ("재사용 전환됨", "repurposed"),
    "recycled": ("재활용됨", "recycled"),
    "disposed": ("폐기됨", "disposed"),
    # roles
    "manufacturer": ("제조사", "manufacturer"),
    "oem": ("완성차/설치", "OEM / installer"),
    "inspector": ("검사", "inspector"),
    "dismantler": ("탈거", "dismantler"),
    "collector": ("수거", "collector"),
    "assessor": ("성능평가", "assessor"),
    "remanufacturer": ("재제조", "remanufacturer"),
    "repurposer": ("재사용", "repurposer"),
    "certifier": ("안전검사", "certifier"),
    "recycler": ("재활용", "recycler"),
    "ministry": ("부처", "ministry"),
    "operator": ("운영", "operator"),
    "admin": ("관리자", "administrator"),
    # ministries
    "MOTIE": ("산업통상부", "MOTIE (industry)"),
    "MOLIT": ("국토교통부", "MOLIT (transport)"),
    "MCEE": ("기후에너지환경부", "MCEE (climate, energy, environment)"),
    "KATS": ("국가기술표준원", "KATS (product safety)"),
    # access levels
    "public": ("공개", "public"),
    "legitimate_interest": ("정당한 이해관계자", "legitimate interest"),
    "authority": ("규제기관", "authority"),
    # removal reasons, outcomes, passport statuses, safety results, backlog measures
    "end_of_life": ("수명 종료", "end of life"),
    "accident": ("사고", "accident"),
    "recall": ("리콜", "recall"),
    "replacement": ("교체", "replacement"),
    "original": ("최초", "original"),
    "pass": ("합격", "pass"),
    "fail": ("불합격", "fail"),
    "vehicle": ("차량", "vehicle"),
    "ess": ("ESS", "ESS"),
    "removed_not_collected": ("탈거 후 미수거", "removed, not collected"),
    "removed_over_30_days": ("탈거 후 30일 초과", "removed over 30 days"),
    "collected_not_graded": ("수거 후 미평가", "collected, not graded"),
    "collected_over_30_days": ("수거 후 30일 초과", "collected over 30 days"),
    "lithium": ("리튬", "lithium"),
    "nickel": ("니켈", "nickel"),
    "cobalt": ("코발트", "cobalt"),
    "manganese": ("망간", "manganese"),
    "copper": ("구리", "copper"),
    "aluminium": ("알루미늄", "aluminium"),
    "graphite": ("흑연", "graphite"),
    "lead": ("납", "lead"),
    "reuse": ("재사용", "reuse"),
    "remanufacture": ("재제조", "remanufacture"),
    "recycle": ("재활용", "recycle"),
    "cell": ("셀", "cell"),
    "module": ("모듈", "module"),
    "pack": ("팩", "pack"),
    # regions (ISO 3166-2:KR)
    "KR-11": ("서울", "Seoul"),
    "KR-26": ("부산", "Busan"),
    "KR-27": ("대구", "Daegu"),
    "KR-28": ("인천", "Incheon"),
    "KR-29": ("광주", "Gwangju"),
    "KR-30": ("대전", "Daejeon"),
    "KR-31": ("울산", "Ulsan"),
    "KR-50": ("세종", "Sejong"),
    "KR-41": ("경기", "Gyeonggi"),
    "KR-42": ("강원", "Gangwon"),
    "KR-43": ("충북", "Chungbuk"),
    "KR-44": ("충남", "Chungnam"),
    "KR-45": ("전북", "Jeonbuk"),
    "KR-46": ("전남", "Jeonnam"),
    "KR-47": ("경북", "Gyeongbuk"),
    "KR-48": ("경남", "Gyeongnam"),
    "KR-49": ("제주", "Jeju"),
    # passport aspects
    "generalProductInformation": ("일반 제품 정보", "General product information"),
    "materialComposition": ("재료 구성", "Material composition"),
    "carbonFootprint": ("탄소 발자국", "Carbon footprint"),
    "circularity": ("순환성", "Circularity"),
    "kr.batterytrace.condition": ("상태", "Condition"),
    "kr.batterytrace.lifecycle": ("생애 기록", "Lifecycle record"),
    "kr.batterytrace.amendments": ("정정 기록", "Amendments"),
    "kr.batterytrace.manufacturing": ("제조 정보", "Manufacturing"),
}

#: Column headings of the dashboard tables (CSV headers keep the keys).
COLUMNS: dict[str, tuple[str, str]] = {
    "month": ("월", "Month"),
    "manufacturer": ("제조사", "Manufacturer"),
    "chemistry": ("화학계", "Chemistry"),
    "kind": ("유형", "Kind"),
    "batteries": ("배터리 수", "Batteries"),
    "kwh": ("kWh", "kWh"),
    "outcome": ("결과", "Outcome"),
    "lithium": ("리튬", "Lithium"),
    "nickel": ("니켈", "Nickel"),
    "cobalt": ("코발트", "Cobalt"),
    "manganese": ("망간", "Manganese"),
    "copper": ("구리", "Copper"),
    "aluminium": ("알루미늄", "Aluminium"),
    "graphite": ("흑연", "Graphite"),
    "lead": ("납", "Lead"),
    "region": ("지역", "Region"),
    "target": ("장착 대상", "Installed in"),
    "inspections": ("검사 수", "Inspections"),
    "avg_soh_pct": ("평균 SoH %", "Average SoH %"),
    "bucket": ("SoH 구간", "SoH band"),
    "reason": ("사유", "Reason"),
    "severity": ("심각도", "Severity"),
    "incidents": ("사고 수", "Incidents"),
    "centre": ("수거센터", "Centre"),
    "measure": ("항목", "Measure"),
    "process": ("공정", "Process"),
    "input_mass_kg": ("투입 질량 kg", "Input mass kg"),
    "black_mass_kg": ("블랙매스 kg", "Black mass kg"),
    "material": ("재료", "Material"),
    "recovered_kg": ("회수 kg", "Recovered kg"),
    "contained_kg": ("함유 kg", "Contained kg"),
    "rate_pct": ("회수율 %", "Recovery %"),
    "eu_target_2027_pct": ("EU 2027 목표 %", "EU 2027 target %"),
    "eu_target_2031_pct": ("EU 2031 목표 %", "EU 2031 target %"),
    "meets_2027_target": ("2027 목표 달성", "Meets 2027"),
    "method": ("방법", "Method"),
    "status": ("여권 상태", "Passport status"),
    "safety": ("안전검사", "Safety inspection"),
    "result": ("결과", "Result"),
    "body": ("검사기관", "Body"),
    "standard": ("기준", "Standard"),
    "grade": ("등급", "Grade"),
    "avg_lithium_pct": ("재생 리튬 %", "Recycled Li %"),
    "avg_nickel_pct": ("재생 니켈 %", "Recycled Ni %"),
    "avg_cobalt_pct": ("재생 코발트 %", "Recycled Co %"),
    "avg_lead_pct": ("재생 납 %", "Recycled Pb %"),
    "meets_2031_target": ("2031 목표 달성", "Meets 2031"),
    "gradings": ("평가 수", "Gradings"),
    "recycler": ("재활용업체", "Recycler"),
    "efficiency_pct": ("재활용 효율 %", "Recycling efficiency %"),
    "eu_target_2025_pct": ("EU 2025 목표 %", "EU 2025 target %"),
    "eu_target_2030_pct": ("EU 2030 목표 %", "EU 2030 target %"),
    "meets_2025_target": ("2025 목표 달성", "Meets 2025"),
    "meets_2030_target": ("2030 목표 달성", "Meets 2030"),
    "battery_id": ("배터리", "Battery"),
    "state": ("상태", "State"),
    "certificate_number": ("인증서 번호", "Certificate"),
    "certificate_body": ("인증기관", "Body"),
    "certificate_valid_until": ("유효기한", "Valid until"),
    "kg": ("kg", "kg"),
}


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "ko" and pair[0] else pair[1]


def translator(lang: str) -> Callable[..., str]:
    """t(key, **values): the message in `lang` with `{name}` placeholders filled in."""

    def t(key: str, **values: Any) -> str:
        pair = MESSAGES.get(key)
        text = pick(pair, lang) if pair else key
        return text.format(**values) if values else text

    return t


def labeller(lang: str) -> Callable[[Any], str]:
    """label(code): a readable name for a code the data carries (unknown codes are shown as they are)."""

    def label(code: Any) -> str:
        if code is None or code == "":
            return "—"
        pair = LABELS.get(str(code))
        return pick(pair, lang) if pair else str(code)

    return label


def column(key: str, lang: str) -> str:
    pair = COLUMNS.get(key)
    return pick(pair, lang) if pair else key


def normalise(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG
