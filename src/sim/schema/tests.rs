use super::*;

fn args(first: Option<i32>, after: Option<usize>, offset: Option<i32>) -> PageArgs {
    PageArgs {
        first,
        after: after.map(cursor),
        offset,
        ..PageArgs::default()
    }
}

#[test]
fn windows_follow_graphene() {
    assert_eq!(
        window("f", 120, &args(Some(50), None, None)).unwrap(),
        (0, 50)
    );
    assert_eq!(
        window("f", 120, &args(Some(50), Some(49), None)).unwrap(),
        (50, 100)
    );
    assert_eq!(
        window("f", 120, &args(Some(50), Some(99), None)).unwrap(),
        (100, 120)
    );
    assert_eq!(
        window("f", 120, &args(Some(50), None, Some(100))).unwrap(),
        (100, 120)
    );
    assert_eq!(
        window("f", 120, &args(Some(10), Some(9), Some(10))).unwrap(),
        (20, 30)
    );
    assert_eq!(window("f", 120, &args(None, None, None)).unwrap(), (0, 50));
    assert_eq!(
        window("f", 10, &args(Some(5), None, Some(50))).unwrap(),
        (10, 10)
    );
    let err = window("paginatedUsers", 120, &args(Some(51), None, None)).unwrap_err();
    assert!(
        err.message.contains("exceeds the `first` limit of 50"),
        "{}",
        err.message
    );
    assert!(parse_cursor("garbage").is_err());
}
